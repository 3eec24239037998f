"""OpenTelemetry traces: the gateway in a process of its own exports over OTLP to a receiver
in this test, which decodes the spans: TensorZero's span layout, the GenAI attributes, the
caller's W3C trace context, and inference unaffected when the collector is down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.mocks.otlp_receiver import OTLPReceiver
from tests.mocks.server import BackgroundServer, free_port

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
GATEWAY = textwrap.dedent(
    """
    import asyncio, json, sys
    import httpx
    from tensorzero_ray import telemetry
    from tensorzero_ray.api.gateway import create_app
    from tensorzero_ray.config import load_config
    from tensorzero_ray.functions.routers import LocalRouters

    async def main():
        config = load_config(sys.argv[1])
        app = create_app(config, LocalRouters(config, None))
        statuses = []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            answer = await client.post(
                "/inference",
                json={"function_name": "chat", "input": {"messages": [{"role": "user", "content": "Hi"}]},
                      "tags": {"team": "search"}, "params": {"chat_completion": {"max_tokens": 50}}},
                headers={"traceparent": "00-%s-%s-01",
                         "tensorzero-otlp-traces-extra-attribute-deployment": "canary",
                         "tensorzero-otlp-traces-extra-header-x-tenant": "acme"},
            )
            statuses.append(answer.status_code)
            streamed = await client.post(
                "/inference",
                json={"model_name": "dummy::good", "stream": True,
                      "input": {"messages": [{"role": "user", "content": "Hi"}]}},
            )
            statuses.append(streamed.status_code)
        telemetry.flush(timeout_s=5)
        print(json.dumps({"statuses": statuses, "dropped": telemetry.dropped_spans()}))

    asyncio.run(main())
    """
    % (TRACE_ID, CALLER_SPAN)
)

CONFIG = """
[gateway.observability]
enabled = false
[gateway.export.otlp.traces]
enabled = true
extra_headers = { "x-collector-token" = "t0k" }
{content}
[models.good]
routing = ["dummy"]
[models.good.providers.dummy]
type = "dummy"
model_name = "good"

[functions.chat]
type = "chat"
[functions.chat.variants.first]
type = "chat_completion"
model = "good"
"""


def run_gateway(tmp_path, endpoint: str, protocol: str, include_content: bool = False, format: str = "") -> dict:
    config = tmp_path / "tensorzero.toml"
    settings = f"include_content = {str(include_content).lower()}" + (f'\nformat = "{format}"' if format else "")
    config.write_text(CONFIG.replace("{content}", settings))
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2",
    }
    done = subprocess.run(
        [sys.executable, "-c", GATEWAY, str(config)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def receiver():
    mock = OTLPReceiver()
    with BackgroundServer(mock.app) as server:
        mock.url = server.url
        yield mock


def by_name(spans: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for span in spans:
        out.setdefault(span["name"], []).append(span)
    return out


def test_http_protobuf_export_follows_tensorzeros_span_layout(receiver, tmp_path):
    result = run_gateway(tmp_path, f"{receiver.url}/v1/traces", "http/protobuf")
    assert result == {"statuses": [200, 200], "dropped": 0}
    assert all(headers["x-collector-token"] == "t0k" for headers in receiver.headers)
    tenants = {span["trace_id"]: headers.get("x-tenant") for headers, spans in receiver.exports for span in spans}
    assert tenants[TRACE_ID] == "acme", "the request's own export header"
    assert set(tenants.values()) == {"acme", None}, "the other request's spans went without it"
    spans = by_name(receiver.spans)
    http = next(s for s in spans["POST /inference"] if s["trace_id"] == TRACE_ID)
    assert http["parent_span_id"] == CALLER_SPAN, "the caller's traceparent is the parent"
    assert http["attributes"]["http.response.status_code"] == 200
    assert http["attributes"]["deployment"] == "canary"
    assert http["resource"]["service.name"] == "tensorzero-gateway"
    function = next(s for s in spans["function_inference"] if s["parent_span_id"] == http["span_id"])
    assert function["attributes"]["function_name"] == "chat" and function["attributes"]["variant_name"] == "first"
    assert function["attributes"]["tags.team"] == "search" and len(function["attributes"]["inference_id"]) == 36
    variant = next(s for s in spans["variant_inference"] if s["parent_span_id"] == function["span_id"])
    assert variant["attributes"] == {"function_name": "chat", "variant_name": "first", "stream": False}
    model = next(s for s in spans["model_inference"] if s["parent_span_id"] == variant["span_id"])
    assert model["attributes"] == {"model_name": "good", "stream": False}
    provider = next(s for s in spans["model_provider_inference"] if s["parent_span_id"] == model["span_id"])
    attributes = provider["attributes"]
    assert attributes["provider_name"] == "dummy" and attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.system"] == "dummy" and attributes["gen_ai.request.model"] == "good"
    assert attributes["gen_ai.request.max_tokens"] == 50
    assert attributes["gen_ai.usage.input_tokens"] == 10 and attributes["gen_ai.usage.total_tokens"] > 10
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert "gen_ai.input.messages" not in attributes, "no prompt text unless include_content"
    streamed = [s for s in spans["model_provider_inference"] if s["attributes"]["stream"]]
    assert streamed and streamed[0]["attributes"]["time_to_first_token"] >= 0


def test_grpc_export_with_content(receiver, tmp_path):
    server, port = receiver.grpc_server()
    try:
        result = run_gateway(tmp_path, f"http://127.0.0.1:{port}", "grpc", include_content=True)
    finally:
        server.stop(0)
    assert result["dropped"] == 0
    provider = next(s for s in receiver.spans if s["name"] == "model_provider_inference")
    assert json.loads(provider["attributes"]["gen_ai.input.messages"])[0]["role"] == "user"
    assert "gen_ai.output.messages" in provider["attributes"]
    assert receiver.headers[0]["x-collector-token"] == "t0k"


def test_a_collector_that_is_down_costs_nothing_but_the_spans(tmp_path):
    result = run_gateway(tmp_path, f"http://127.0.0.1:{free_port()}/v1/traces", "http/protobuf")
    assert result["statuses"] == [200, 200]
    assert result["dropped"] > 0


def test_openinference_attributes(receiver, tmp_path):
    result = run_gateway(
        tmp_path, f"{receiver.url}/v1/traces", "http/protobuf", include_content=True, format="openinference"
    )
    assert result["dropped"] == 0
    spans = by_name(receiver.spans)
    assert spans["function_inference"][0]["attributes"]["openinference.span.kind"] == "CHAIN"
    provider = next(s for s in spans["model_provider_inference"] if not s["attributes"]["stream"])["attributes"]
    assert provider["openinference.span.kind"] == "LLM"
    assert (provider["llm.system"], provider["llm.model_name"]) == ("dummy", "good")
    assert provider["llm.token_count.prompt"] == 10 and provider["llm.token_count.total"] > 10
    assert provider["input.mime_type"] == "application/json" and provider["input.value"] and provider["output.value"]
    assert "gen_ai.system" not in provider
