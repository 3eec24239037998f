"""OpenTelemetry traces over OTLP with the official SDK (spec §5.2): TensorZero's span layout
(`POST /inference` > `function_inference` > `variant_inference` > `model_inference` >
`model_provider_inference`) with the GenAI semantic conventions on provider spans. Off
unless `[gateway.export.otlp.traces] enabled = true`; then the endpoint is
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` and the protocol `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`
(`grpc`, TensorZero's only one and the default, or `http/protobuf`). Spans leave in batches
from a background thread: a collector that is down costs requests nothing, and the spans it
missed are counted."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import orjson
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from tensorzero_ray import __version__

logger = logging.getLogger(__name__)

ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
PROTOCOL_VARIABLE = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
MAX_ROUTED_TRACES = 10_000
MAX_HEADER_SETS = 32
_NOOP = trace.NoOpTracer()
_lock = threading.Lock()
_state: dict[str, Any] = {
    "tracer": _NOOP,
    "provider": None,
    "exporter": None,
    "include_content": False,
    "openinference": False,
}


class RoutingExporter(SpanExporter):
    """OTLP exporters by export headers: the config's `extra_headers`, overridden per request by
    `tensorzero-otlp-traces-extra-header-<name>` headers (registered for the request's trace by
    the HTTP middleware). Counts the spans a failed export dropped."""

    def __init__(self, make: Any, headers: dict[str, str]):
        self._make = make
        self._headers = headers
        self._exporters: OrderedDict[tuple, SpanExporter] = OrderedDict()
        self._by_trace: OrderedDict[int, dict[str, str]] = OrderedDict()
        self._guard = threading.Lock()
        self.dropped = 0

    def route(self, trace_id: int, headers: dict[str, str]) -> None:
        with self._guard:
            self._by_trace[trace_id] = headers
            while len(self._by_trace) > MAX_ROUTED_TRACES:
                self._by_trace.popitem(last=False)

    def _exporter_for(self, headers: dict[str, str]) -> SpanExporter:
        key = tuple(sorted(headers.items()))
        exporter = self._exporters.get(key)
        if exporter is None:
            exporter = self._exporters[key] = self._make({**self._headers, **headers})
            # A bounded set: callers choose these headers.
            while len(self._exporters) > MAX_HEADER_SETS:
                self._exporters.popitem(last=False)[1].shutdown()
        self._exporters.move_to_end(key)
        return exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        groups: dict[tuple, list[ReadableSpan]] = {}
        with self._guard:
            for span in spans:
                headers = self._by_trace.get(span.context.trace_id, {})
                groups.setdefault(tuple(sorted(headers.items())), []).append(span)
                if span.parent is None or span.kind == trace.SpanKind.SERVER:
                    self._by_trace.pop(span.context.trace_id, None)
        result = SpanExportResult.SUCCESS
        for key, group in groups.items():
            try:
                done = self._exporter_for(dict(key)).export(group)
            except Exception:  # noqa: BLE001 - a collector's failure must never reach a request
                done = SpanExportResult.FAILURE
            if done is not SpanExportResult.SUCCESS:
                self.dropped += len(group)
                result = done
        return result

    def shutdown(self) -> None:
        for exporter in self._exporters.values():
            exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(exporter.force_flush(timeout_millis) for exporter in self._exporters.values())


def _exporter(protocol: str, endpoint: str, headers: dict[str, str]) -> SpanExporter:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, headers=headers or None, insecure=endpoint.startswith("http://"))
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HTTPExporter

        return HTTPExporter(endpoint=endpoint, headers=headers or None)
    raise ValueError(f"{PROTOCOL_VARIABLE}={protocol!r}: expected `grpc` or `http/protobuf`")


def configure(traces) -> None:
    """Once per process, from `[gateway.export.otlp.traces]`."""
    if not traces.enabled:
        return
    with _lock:
        if _state["provider"] is not None:
            return
        endpoint = os.environ.get(ENDPOINT_VARIABLE)
        if not endpoint:
            raise ValueError(f"`gateway.export.otlp.traces.enabled` needs {ENDPOINT_VARIABLE} (the collector's URL)")
        protocol = os.environ.get(PROTOCOL_VARIABLE, "grpc")
        exporter = RoutingExporter(lambda headers: _exporter(protocol, endpoint, headers), dict(traces.extra_headers))
        resource = Resource.create({"service.name": "tensorzero-gateway", "service.version": __version__})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        _state.update(
            provider=provider,
            exporter=exporter,
            tracer=provider.get_tracer("tensorzero_ray", __version__),
            include_content=bool(traces.include_content),
            openinference=traces.format == "openinference",
        )


def tracer() -> trace.Tracer:
    return _state["tracer"]


def include_content() -> bool:
    return _state["include_content"]


def route_headers(trace_id: int, headers: dict[str, str]) -> None:
    """Export this trace's spans with these headers too (per-request export headers)."""
    exporter = _state["exporter"]
    if exporter is not None and headers:
        exporter.route(trace_id, headers)


def dropped_spans() -> int | None:
    """Spans a failed export dropped in this process; None when tracing is off."""
    exporter = _state["exporter"]
    return None if exporter is None else exporter.dropped


def flush(timeout_s: float = 10.0) -> bool:
    provider = _state["provider"]
    return True if provider is None else provider.force_flush(int(timeout_s * 1000))


def function_attributes() -> dict[str, Any]:
    return {"openinference.span.kind": "CHAIN"} if _state["openinference"] else {}


def provider_attributes(provider_name: str, system: str, model: str, request, stream: bool) -> dict[str, Any]:
    """A provider span's request attributes: the GenAI semantic conventions, or OpenInference's
    (`format = "openinference"`). Prompt text only with `include_content`."""
    if _state["provider"] is None:
        return {}  # tracing is off: nothing to build on the request path
    attributes: dict[str, Any] = {"provider_name": provider_name, "stream": stream}
    parameters = {"max_tokens": request.max_tokens, "temperature": request.temperature}
    parameters = {k: v for k, v in parameters.items() if v is not None}
    if _state["openinference"]:
        attributes.update({"openinference.span.kind": "LLM", "llm.system": system, "llm.model_name": model})
        if parameters:
            attributes["llm.invocation_parameters"] = orjson.dumps(parameters).decode()
        return attributes
    attributes.update({"gen_ai.operation.name": "chat", "gen_ai.system": system, "gen_ai.request.model": model})
    attributes.update({f"gen_ai.request.{k}": v for k, v in parameters.items()})
    if _state["include_content"]:
        if request.system is not None:
            attributes["gen_ai.system_instructions"] = request.system
        attributes["gen_ai.input.messages"] = orjson.dumps(
            [m.model_dump(mode="json") for m in request.messages]
        ).decode()
    return attributes


def provider_result_attributes(response) -> dict[str, Any]:
    """Usage, finish reason and (with `include_content`) the answer, once the provider answered."""
    if _state["provider"] is None:
        return {}
    usage = response.usage
    tokens = {"input": usage.input_tokens, "output": usage.output_tokens}
    if usage.input_tokens is not None and usage.output_tokens is not None:
        tokens["total"] = usage.input_tokens + usage.output_tokens
    tokens = {k: v for k, v in tokens.items() if v is not None}
    if _state["openinference"]:
        names = {"input": "prompt", "output": "completion", "total": "total"}
        attributes = {f"llm.token_count.{names[k]}": v for k, v in tokens.items()}
        if _state["include_content"]:
            attributes.update(
                {
                    "input.mime_type": "application/json",
                    "input.value": response.raw_request,
                    "output.mime_type": "application/json",
                    "output.value": response.raw_response,
                }
            )
        return attributes
    attributes = {f"gen_ai.usage.{k}_tokens": v for k, v in tokens.items()}
    if response.finish_reason is not None:
        attributes["gen_ai.response.finish_reasons"] = [response.finish_reason.value]
    if _state["include_content"]:
        attributes["gen_ai.output.messages"] = orjson.dumps(
            [b.model_dump(mode="json") for b in response.content]
        ).decode()
    return attributes
