"""The Anthropic translator against a server speaking the Messages API and its SSE events."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter

from tensorzero_ray.config.models import ProviderConfig
from tensorzero_ray.errors import InvalidRequest, ProviderError
from tensorzero_ray.providers import CallContext, build_provider
from tensorzero_ray.providers.anthropic import default_max_tokens
from tensorzero_ray.types import (
    FinishReason,
    Text,
    TextChunk,
    Thought,
    ToolCall,
    ToolCallChunk,
    ToolCallOutput,
    ToolResult,
)
from tensorzero_ray.types.model import ModelInferenceRequest, RequestMessage, ToolDefinition, ToolSettings

PROVIDER = TypeAdapter(ProviderConfig)
CTX = CallContext(credentials={"anthropic": "sk-ant-test"})


def provider(mock, model="claude-ok"):
    config = PROVIDER.validate_python(
        {
            "type": "anthropic",
            "model_name": model,
            "api_base": f"{mock.url}/v1/messages",
            "api_key_location": "dynamic::anthropic",
        }
    )
    return build_provider("p", config, timeout_s=5)


def request(**kwargs) -> ModelInferenceRequest:
    kwargs.setdefault("max_tokens", 100)
    messages = kwargs.pop("messages", [RequestMessage(role="user", content=[Text(text="Hi")])])
    return ModelInferenceRequest(system="Be brief.", messages=messages, **kwargs)


async def test_non_streaming_request_and_response(anthropic_mock):
    response = await provider(anthropic_mock).infer(request(temperature=0.1, seed=3), CTX)
    sent = anthropic_mock.last()
    assert sent["headers"]["x-api-key"] == "sk-ant-test"
    assert sent["body"] == {
        "model": "claude-ok",
        "max_tokens": 100,
        "temperature": 0.1,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    }
    assert response.content == [Text(text="Hello from Claude mock")]
    assert response.usage.input_tokens == 20 + 5 + 2
    assert response.usage.provider_cache_read_input_tokens == 5
    assert response.usage.provider_cache_write_input_tokens == 2
    assert response.finish_reason == FinishReason.STOP


async def test_streaming(anthropic_mock):
    chunks = [c async for c in provider(anthropic_mock).stream(request(), CTX)]
    assert anthropic_mock.last()["body"]["stream"] is True
    text = "".join(p.text for c in chunks for p in c.content if isinstance(p, TextChunk))
    assert text == "Hello from Claude mock"
    final = [c for c in chunks if c.usage][-1]
    assert (final.usage.input_tokens, final.usage.output_tokens) == (20, 4)
    assert final.finish_reason == FinishReason.STOP


async def test_tools_and_tool_history(anthropic_mock):
    settings = ToolSettings(
        tools=[ToolDefinition(name="get_weather", description="Weather", parameters={"type": "object"})],
        tool_choice="required",
        parallel_tool_calls=False,
    )
    history = [
        RequestMessage(role="user", content=[Text(text="Weather?")]),
        RequestMessage(role="assistant", content=[ToolCall(id="t0", name="get_weather", arguments='{"city":"Oslo"}')]),
        RequestMessage(role="user", content=[ToolResult(id="t0", name="get_weather", result="rain")]),
    ]
    response = await provider(anthropic_mock, "claude-tool").infer(
        request(messages=history, tool_settings=settings), CTX
    )
    body = anthropic_mock.last()["body"]
    assert body["tools"] == [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "t0", "name": "get_weather", "input": {"city": "Oslo"}}
    ]
    assert body["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "t0", "content": "rain"}]
    assert response.content[1] == ToolCallOutput(id="toolu_1", raw_name="get_weather", raw_arguments='{"city":"Tokyo"}')
    assert response.finish_reason == FinishReason.TOOL_CALL


async def test_tool_choice_none_omits_tools(anthropic_mock):
    settings = ToolSettings(tools=[ToolDefinition(name="t", parameters={})], tool_choice="none")
    await provider(anthropic_mock).infer(request(tool_settings=settings), CTX)
    assert "tools" not in anthropic_mock.last()["body"]


async def test_streamed_tool_call(anthropic_mock):
    pieces = [p async for c in provider(anthropic_mock, "claude-tool").stream(request(), CTX) for p in c.content]
    assert all(isinstance(p, ToolCallChunk) and p.id == "toolu_1" for p in pieces)
    assert "".join(p.raw_arguments for p in pieces) == '{"city": "Tokyo"}'


async def test_json_mode_on_prefills_and_restores_the_brace(anthropic_mock):
    response = await provider(anthropic_mock, "claude-json").infer(request(function_type="json", json_mode="on"), CTX)
    assert anthropic_mock.last()["body"]["messages"][-1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Here is the JSON requested:\n{"}],
    }
    assert response.content == [Text(text='{"answer":"42"}')]


async def test_thinking_blocks(anthropic_mock):
    response = await provider(anthropic_mock, "claude-thinking").infer(request(thinking_budget_tokens=1024), CTX)
    assert anthropic_mock.last()["body"]["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert response.content[0] == Thought(text="Let me think", signature="sig123", provider_type="anthropic")


def test_max_tokens_defaults_by_model():
    assert default_max_tokens("claude-3-5-sonnet-20241022") == 8192
    assert default_max_tokens("claude-sonnet-4-5") == 64000
    assert default_max_tokens("claude-opus-4-1") == 32000
    assert default_max_tokens("claude-3-haiku-20240307") == 4096
    assert default_max_tokens("mystery") is None


async def test_unknown_model_without_max_tokens_is_rejected(anthropic_mock):
    with pytest.raises(InvalidRequest, match="requires `max_tokens`"):
        await provider(anthropic_mock, "claude-ok").infer(request(max_tokens=None), CTX)


async def test_server_error(anthropic_mock):
    with pytest.raises(ProviderError, match="HTTP 500") as caught:
        await provider(anthropic_mock, "claude-500").infer(request(), CTX)
    assert caught.value.raw_response


async def test_stream_break(anthropic_mock):
    with pytest.raises(ProviderError, match="Error from anthropic client"):
        async for _ in provider(anthropic_mock, "claude-break").stream(request(), CTX):
            pass
