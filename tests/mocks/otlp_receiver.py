"""An OTLP trace receiver over HTTP/protobuf and gRPC, decoding what it is sent with
OpenTelemetry's own protobuf messages into plain span dicts."""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def _value(any_value) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


def decode(request: trace_service_pb2.ExportTraceServiceRequest) -> list[dict[str, Any]]:
    spans = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    {
                        "name": span.name,
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "attributes": {kv.key: _value(kv.value) for kv in span.attributes},
                        "resource": resource,
                    }
                )
    return spans


class OTLPReceiver:
    def __init__(self):
        self.spans: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        # (headers, spans) of each export request
        self.exports: list[tuple[dict[str, str], list[dict[str, Any]]]] = []
        self.app = Starlette(routes=[Route("/v1/traces", self.http_traces, methods=["POST"])])

    async def http_traces(self, request: Request) -> Response:
        spans = decode(trace_service_pb2.ExportTraceServiceRequest.FromString(await request.body()))
        self.headers.append(dict(request.headers))
        self.exports.append((dict(request.headers), spans))
        self.spans += spans
        body = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        return Response(body, media_type="application/x-protobuf")

    def grpc_server(self) -> tuple[grpc.Server, int]:
        receiver = self

        class Servicer(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):  # noqa: N802 - the gRPC method's name
                receiver.headers.append(dict(context.invocation_metadata()))
                receiver.spans += decode(request)
                return trace_service_pb2.ExportTraceServiceResponse()

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        return server, port
