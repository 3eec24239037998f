"""The OpenAI translator and its OpenAI-compatible family against a server speaking OpenAI's
wire format: what is sent, what comes back, streaming, errors and timeouts."""

from __future__ import annotations

import asyncio
import re
import urllib.parse

import orjson
import pytest
from pydantic import TypeAdapter

from tensorzero_ray.config import load_config
from tensorzero_ray.config.models import ProviderConfig
from tensorzero_ray.errors import ProviderError
from tensorzero_ray.functions.routers import model_registry
from tensorzero_ray.inference.model import RequestExtras
from tensorzero_ray.providers import PROVIDERS, CallContext, base, build_provider
from tensorzero_ray.types import ExtraBodyEntry, FinishReason, Text, TextChunk, ToolCall, ToolCallChunk, ToolResult
from tensorzero_ray.types.model import ModelInferenceRequest, RequestMessage, ToolDefinition, ToolSettings

PROVIDER = TypeAdapter(ProviderConfig)


def provider(mock, model: str = "gpt-ok", type_: str = "openai", **extra):
    config = PROVIDER.validate_python(
        {
            "type": type_,
            "model_name": model,
            "api_base": f"{mock.url}/v1/",
            "api_key_location": "dynamic::openai",
            **extra,
        }
    )
    return build_provider("p", config, timeout_s=5)


def request(**kwargs) -> ModelInferenceRequest:
    messages = kwargs.pop("messages", [RequestMessage(role="user", content=[Text(text="Hi")])])
    return ModelInferenceRequest(system="Be brief.", messages=messages, **kwargs)


CTX = CallContext(credentials={"openai": "sk-test"})


async def test_non_streaming_request_and_response(openai_mock):
    p = provider(openai_mock)
    response = await p.infer(request(temperature=0.2, max_tokens=50, seed=7, stop_sequences=["\n"]), CTX)
    sent = openai_mock.last()
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == "Bearer sk-test"
    assert sent["body"] == {
        "model": "gpt-ok",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        ],
        "temperature": 0.2,
        "max_completion_tokens": 50,
        "seed": 7,
        "stop": ["\n"],
    }
    assert response.content == [Text(text="Hello from the mock")]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 7)
    assert response.usage.provider_cache_read_input_tokens == 3
    assert response.finish_reason == FinishReason.STOP
    assert orjson.loads(response.raw_request)["model"] == "gpt-ok"
    assert "chatcmpl-1" in response.raw_response


async def test_streaming_with_usage(openai_mock):
    p = provider(openai_mock)
    chunks = [c async for c in p.stream(request(), CTX)]
    assert openai_mock.last()["body"]["stream_options"] == {"include_usage": True}
    text = "".join(piece.text for c in chunks for piece in c.content if isinstance(piece, TextChunk))
    assert text == "Hello from the mock"
    assert [c.finish_reason for c in chunks if c.finish_reason] == [FinishReason.STOP]
    usage = [c.usage for c in chunks if c.usage]
    assert (usage[-1].input_tokens, usage[-1].output_tokens) == (12, 4)


async def test_tools_round_trip(openai_mock):
    p = provider(openai_mock, "gpt-tool")
    tools = ToolSettings(
        tools=[ToolDefinition(name="get_weather", description="Weather", parameters={"type": "object"})],
        tool_choice="required",
        parallel_tool_calls=False,
    )
    history = [
        RequestMessage(role="user", content=[Text(text="Weather?")]),
        RequestMessage(role="assistant", content=[ToolCall(id="c0", name="get_weather", arguments="{}")]),
        RequestMessage(
            role="user", content=[ToolResult(id="c0", name="get_weather", result="sunny"), Text(text="And tomorrow?")]
        ),
    ]
    response = await p.infer(request(messages=history, tool_settings=tools), CTX)
    body = openai_mock.last()["body"]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}},
        }
    ]
    assert body["tool_choice"] == "required"
    assert body["parallel_tool_calls"] is False
    assert body["messages"][2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c0", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}],
    }
    assert body["messages"][3] == {"role": "tool", "tool_call_id": "c0", "content": "sunny"}
    assert body["messages"][4]["role"] == "user"
    call = response.content[0]
    assert (call.id, call.raw_name, call.raw_arguments) == ("call_1", "get_weather", '{"city":"Tokyo"}')
    assert response.finish_reason == FinishReason.TOOL_CALL


async def test_streamed_tool_call_chunks_keep_the_call_id(openai_mock):
    p = provider(openai_mock, "gpt-tool")
    chunks = [piece async for c in p.stream(request(), CTX) for piece in c.content]
    assert all(isinstance(c, ToolCallChunk) and c.id == "call_1" for c in chunks)
    assert "".join(c.raw_name for c in chunks) == "get_weather"
    assert "".join(c.raw_arguments for c in chunks) == '{"city":"Tokyo"}'


@pytest.mark.parametrize(
    "mode, schema, expected",
    [
        ("on", None, {"type": "json_object"}),
        (
            "strict",
            {"type": "object"},
            {"type": "json_schema", "json_schema": {"name": "response", "strict": True, "schema": {"type": "object"}}},
        ),
        ("strict", None, {"type": "json_object"}),
        ("off", {"type": "object"}, None),
    ],
)
async def test_json_modes(openai_mock, mode, schema, expected):
    p = provider(openai_mock, "gpt-json")
    await p.infer(request(function_type="json", json_mode=mode, output_schema=schema), CTX)
    body = openai_mock.last()["body"]
    assert body.get("response_format") == expected
    if mode == "on":
        assert body["messages"][0]["content"].startswith("Respond using JSON.")


async def test_json_mode_tool_forces_the_respond_tool(openai_mock):
    p = provider(openai_mock, "gpt-tool")
    response = await p.infer(request(function_type="json", json_mode="tool", output_schema={"type": "object"}), CTX)
    body = openai_mock.last()["body"]
    assert body["tools"][0]["function"]["name"] == "respond"
    assert body["tool_choice"] == {"type": "function", "function": {"name": "respond"}}
    assert response.content == [Text(text='{"city":"Tokyo"}')]


async def test_extra_body_and_headers_merge_in_priority_order(openai_mock):
    p = provider(
        openai_mock,
        extra_body=[{"pointer": "/top_k", "value": 40}, {"pointer": "/seed", "value": 1}],
        extra_headers=[{"name": "x-from-config", "value": "c"}],
    )
    ctx = CallContext(
        credentials={"openai": "sk-test"},
        extra_body=[ExtraBodyEntry(pointer="/seed", value=2), ExtraBodyEntry(pointer="/logit_bias/50256", value=-100)],
    )
    await p.infer(
        request(seed=0, extra_body=[ExtraBodyEntry(pointer="/temperature", delete=True)], temperature=1.0), ctx
    )
    sent = openai_mock.last()
    assert sent["body"]["top_k"] == 40
    assert sent["body"]["seed"] == 2
    assert sent["body"]["logit_bias"] == {"50256": -100}
    assert "temperature" not in sent["body"]
    assert sent["headers"]["x-from-config"] == "c"


@pytest.mark.parametrize("model, status, rate_limited", [("gpt-500", 502, False), ("gpt-429", 429, True)])
async def test_http_errors_carry_status_and_raw_response(openai_mock, model, status, rate_limited):
    p = provider(openai_mock, model)
    with pytest.raises(ProviderError) as caught:
        await p.infer(request(), CTX)
    assert caught.value.status_code == status
    assert caught.value.rate_limited is rate_limited
    assert "Error from openai server: HTTP" in caught.value.message
    assert caught.value.raw_response


async def test_wrong_key_is_a_provider_error(openai_mock):
    p = provider(openai_mock)
    with pytest.raises(ProviderError, match="Incorrect API key"):
        await p.infer(request(), CallContext(credentials={"openai": "wrong"}))


@pytest.mark.parametrize("stream", [False, True])
async def test_a_key_echoed_by_the_provider_is_scrubbed(openai_mock, stream):
    secret = "sk-live-0123456789abcdef"
    p = provider(openai_mock)
    with pytest.raises(ProviderError) as caught:
        if stream:
            await anext(aiter(p.stream(request(), CallContext(credentials={"openai": secret}))))
        else:
            await p.infer(request(), CallContext(credentials={"openai": secret}))
    assert "Incorrect API key provided: [REDACTED]" in caught.value.message
    assert secret not in caught.value.message and secret not in caught.value.raw_response


async def test_client_timeout(openai_mock):
    config = PROVIDER.validate_python(
        {
            "type": "openai",
            "model_name": "gpt-slow",
            "api_base": f"{openai_mock.url}/v1/",
            "api_key_location": "dynamic::openai",
        }
    )
    p = build_provider("p", config, timeout_s=0.3)
    with pytest.raises(ProviderError, match="timed out"):
        await p.infer(request(), CTX)


async def test_stream_broken_mid_way_raises_after_the_chunks_it_got(openai_mock):
    p = provider(openai_mock, "gpt-break")
    received = []
    with pytest.raises(ProviderError, match="Error from openai client"):
        async for chunk in p.stream(request(), CTX):
            received.extend(chunk.content)
    assert [c.text for c in received] == ["Hello", " from"]


@pytest.mark.parametrize(
    "type_",
    ["together", "fireworks", "groq", "deepseek", "xai", "openrouter", "hyperbolic", "mistral", "vllm", "sglang"],
)
async def test_openai_compatible_family_uses_api_base(openai_mock, type_):
    assert type_ in PROVIDERS
    p = provider(openai_mock, type_=type_)
    response = await p.infer(request(), CTX)
    assert response.content == [Text(text="Hello from the mock")]
    assert openai_mock.last()["headers"]["authorization"] == "Bearer sk-test"


async def test_self_hosted_without_key_sends_no_authorization(openai_mock, monkeypatch):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    config = PROVIDER.validate_python(
        {"type": "vllm", "model_name": "gpt-ok-noauth", "api_base": f"{openai_mock.url}/v1/"}
    )
    p = build_provider("p", config, timeout_s=5)
    await p.infer(request(), CallContext())
    assert "authorization" not in openai_mock.last()["headers"]


async def test_azure_puts_deployment_in_url_and_key_in_header(openai_mock):
    config = PROVIDER.validate_python(
        {"type": "azure", "deployment_id": "gpt-ok", "endpoint": openai_mock.url, "api_key_location": "dynamic::openai"}
    )
    p = build_provider("p", config, timeout_s=5)
    response = await p.infer(request(), CTX)
    sent = openai_mock.last()
    assert sent["path"] == "/openai/deployments/gpt-ok/chat/completions"
    assert sent["query"]["api-version"]
    assert sent["headers"]["api-key"] == "sk-test"
    assert "model" not in sent["body"]
    assert response.content == [Text(text="Hello from the mock")]


async def test_calls_go_through_the_proxy_the_environment_names(openai_mock, monkeypatch):
    """HTTP_PROXY is honoured as httpx and curl honour it (read once, not per request)."""
    seen: list[bytes] = []

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        line, _, rest = head.partition(b"\r\n")
        seen.append(line)
        method, target, version = line.split(b" ")
        url = urllib.parse.urlsplit(target.decode())
        length = int(re.search(rb"(?i)content-length: *(\d+)", rest).group(1))
        body = await reader.readexactly(length)
        upstream_reader, upstream_writer = await asyncio.open_connection(url.hostname, url.port)
        upstream_writer.write(b" ".join([method, url.path.encode(), version]) + b"\r\n" + rest + body)
        answer = await upstream_reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", answer).group(1))
        writer.write(answer + await upstream_reader.readexactly(length))
        await writer.drain()
        writer.close()
        upstream_writer.close()

    proxy = await asyncio.start_server(forward, "127.0.0.1", 0)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.sockets[0].getsockname()[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    base._environment_proxies.cache_clear()
    base._proxy_for_host.cache_clear()
    try:
        response = await provider(openai_mock).infer(request(), CTX)
    finally:
        monkeypatch.undo()
        base._environment_proxies.cache_clear()
        base._proxy_for_host.cache_clear()
        proxy.close()
    assert response.content == [Text(text="Hello from the mock")]
    assert seen == [f"POST {openai_mock.url}/v1/chat/completions HTTP/1.1".encode()]


async def test_provider_type_defaults_supply_the_credential_location(openai_mock, tmp_path):
    path = tmp_path / "tensorzero.toml"
    path.write_text(
        f"""
[provider_types.openai.defaults]
api_key_location = "dynamic::team_key"

[models.gpt]
routing = ["openai"]
[models.gpt.providers.openai]
type = "openai"
model_name = "gpt-ok"
api_base = "{openai_mock.url}/v1/"
"""
    )
    registry = model_registry(load_config(path))
    hello = ModelInferenceRequest(messages=[RequestMessage(role="user", content=[Text(text="Hi")])])
    await registry.get("gpt").infer(hello, RequestExtras(credentials={"team_key": openai_mock.api_key}))
    assert openai_mock.last()["headers"]["authorization"] == f"Bearer {openai_mock.api_key}"
    shorthand = registry.get("openai::gpt-4o-mini").providers[0][1]
    assert shorthand.api_key("env::OPENAI_API_KEY", CallContext(credentials={"team_key": "k-123"})) == "k-123"
    await registry.aclose()
