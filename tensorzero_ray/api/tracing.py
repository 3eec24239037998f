"""The HTTP span of a traced route (spec §5.2), its parent taken from the request's W3C
`traceparent`, plus attributes the caller adds with `tensorzero-otlp-traces-extra-attribute-<key>`
headers, and export headers for its spans with `tensorzero-otlp-traces-extra-header-<name>`."""

from __future__ import annotations

from opentelemetry import propagate, trace
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tensorzero_ray import telemetry

TRACED = frozenset(
    {"/inference", "/feedback", "/batch_inference", "/openai/v1/chat/completions", "/openai/v1/embeddings"}
)
EXTRA_ATTRIBUTE = "tensorzero-otlp-traces-extra-attribute-"
EXTRA_HEADER = "tensorzero-otlp-traces-extra-header-"


class Tracing:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path not in TRACED:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        parent = propagate.extract({k: v for k, v in headers.items()})
        attributes = {"http.request.method": scope["method"], "url.path": path}
        export_headers = {}
        for name, value in headers.items():
            if name.startswith(EXTRA_ATTRIBUTE):
                attributes[name.removeprefix(EXTRA_ATTRIBUTE)] = value
            elif name.startswith(EXTRA_HEADER):
                export_headers[name.removeprefix(EXTRA_HEADER)] = value
        span_name = f"{scope['method']} {path}"
        with telemetry.tracer().start_as_current_span(
            span_name, context=parent, kind=trace.SpanKind.SERVER, attributes=attributes
        ) as span:
            telemetry.route_headers(span.get_span_context().trace_id, export_headers)

            async def traced_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", message["status"])
                    if message["status"] >= 500:
                        span.set_status(trace.StatusCode.ERROR)
                await send(message)

            await self.app(scope, receive, traced_send)
