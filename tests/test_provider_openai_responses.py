"""OpenAI's Responses API (`api_type = "responses"`) against a server speaking it: input
items, reasoning items that round-trip, built-in tools passed through, typed stream events."""

from __future__ import annotations

import base64

import pytest
from pydantic import TypeAdapter

from tensorzero_ray.config.models import ProviderConfig, shorthand_model
from tensorzero_ray.errors import ProviderError
from tensorzero_ray.inference.output import ChunkAggregator
from tensorzero_ray.providers import CallContext, build_provider
from tensorzero_ray.providers.openai_responses import OpenAIResponsesProvider
from tensorzero_ray.types import (
    File,
    FinishReason,
    SummaryText,
    Text,
    Thought,
    ToolCall,
    ToolCallOutput,
    ToolResult,
    Unknown,
)
from tensorzero_ray.types.model import ModelInferenceRequest, RequestMessage, ToolDefinition, ToolSettings

PROVIDER = TypeAdapter(ProviderConfig)
CTX = CallContext(credentials={"openai": "sk-test"})
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()


def provider(mock, model="gpt-ok", **fields):
    config = PROVIDER.validate_python(
        {
            "type": "openai",
            "api_type": "responses",
            "model_name": model,
            "api_base": f"{mock.url}/v1/",
            "api_key_location": "dynamic::openai",
            **fields,
        }
    )
    return build_provider("p", config, timeout_s=5)


def request(**kwargs) -> ModelInferenceRequest:
    messages = kwargs.pop("messages", [RequestMessage(role="user", content=[Text(text="Hi")])])
    return ModelInferenceRequest(system="Be brief.", messages=messages, **kwargs)


def test_the_shorthand_and_api_type_pick_the_responses_api():
    model = shorthand_model("openai::responses::gpt-5")
    assert isinstance(build_provider("openai", model.providers["openai"], timeout_s=5), OpenAIResponsesProvider)


async def test_request_items_and_response(openai_mock):
    response = await provider(openai_mock).infer(request(max_tokens=30, temperature=0.5), CTX)
    sent = openai_mock.last()
    assert sent["path"] == "/v1/responses"
    assert sent["body"] == {
        "model": "gpt-ok",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}],
        "store": False,
        "instructions": "Be brief.",
        "temperature": 0.5,
        "max_output_tokens": 30,
    }
    assert response.content == [Text(text="Hello from the mock")]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (11, 7)
    assert response.usage.provider_cache_read_input_tokens == 2
    assert response.finish_reason == FinishReason.STOP


async def test_streaming_events(openai_mock):
    chunks = [c async for c in provider(openai_mock).stream(request(), CTX)]
    assert openai_mock.last()["body"]["stream"] is True
    aggregate = ChunkAggregator()
    for chunk in chunks:
        for piece in chunk.content:
            aggregate.add(piece)
    assert aggregate.blocks() == [Text(text="Hello from the mock")]
    assert chunks[-1].finish_reason == FinishReason.STOP and chunks[-1].usage.output_tokens == 7
    cut = [c async for c in provider(openai_mock, "gpt-cut").stream(request(), CTX)]
    assert cut[-1].fatal and "without `response.completed`" in cut[-1].error


async def test_reasoning_round_trip(openai_mock):
    reasoning = provider(openai_mock, "gpt-reasoning", include_encrypted_reasoning=True)
    response = await reasoning.infer(request(reasoning_effort="low"), CTX)
    body = openai_mock.last()["body"]
    assert body["reasoning"] == {"effort": "low", "summary": "auto"}
    assert body["include"] == ["reasoning.encrypted_content"]
    thought, text = response.content
    assert thought.summary == [SummaryText(text="Thinking it over")]
    assert thought.signature == "gAAAA-encrypted" and thought.extra_data == {"id": "rs_1"}
    history = [
        RequestMessage(role="user", content=[Text(text="Q")]),
        RequestMessage(role="assistant", content=[thought, text]),
        RequestMessage(role="user", content=[Text(text="And?")]),
    ]
    await reasoning.infer(request(messages=history), CTX)
    assert openai_mock.last()["body"]["input"][1:3] == [
        {
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": "Thinking it over"}],
            "id": "rs_1",
            "encrypted_content": "gAAAA-encrypted",
        },
        {"role": "assistant", "content": [{"type": "output_text", "text": "Hello from the mock"}]},
    ]
    aggregate = ChunkAggregator()
    async for chunk in reasoning.stream(request(), CTX):
        for piece in chunk.content:
            aggregate.add(piece)
    streamed = aggregate.blocks()[0]
    assert isinstance(streamed, Thought) and streamed.summary == [SummaryText(text="Thinking it over")]
    assert streamed.signature == "gAAAA-encrypted"


async def test_tool_call_round_trip_and_builtin_tools(openai_mock):
    settings = ToolSettings(
        tools=[ToolDefinition(name="get_weather", description="Weather", parameters={"type": "object"})],
        tool_choice="auto",
        parallel_tool_calls=False,
    )
    search = provider(openai_mock, "gpt-tool", provider_tools=[{"type": "web_search"}])
    response = await search.infer(request(tool_settings=settings), CTX)
    body = openai_mock.last()["body"]
    assert body["tools"] == [
        {"type": "web_search"},
        {"type": "function", "name": "get_weather", "description": "Weather", "parameters": {"type": "object"}},
    ]
    assert (body["tool_choice"], body["parallel_tool_calls"]) == ("auto", False)
    web, call = response.content
    assert web == Unknown(data={"type": "web_search_call", "id": "ws_1", "status": "completed"})
    assert call == ToolCallOutput(id="call_1", raw_name="get_weather", raw_arguments='{"city":"Tokyo"}')
    assert response.finish_reason == FinishReason.TOOL_CALL
    history = [
        RequestMessage(role="user", content=[Text(text="Weather?")]),
        RequestMessage(
            role="assistant", content=[ToolCall(id="call_1", name="get_weather", arguments='{"city":"Tokyo"}')]
        ),
        RequestMessage(role="user", content=[ToolResult(id="call_1", name="get_weather", result="sunny")]),
    ]
    await provider(openai_mock).infer(request(messages=history), CTX)
    assert openai_mock.last()["body"]["input"][1:] == [
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Tokyo"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
    ]


async def test_json_image_and_incomplete(openai_mock):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    response = await provider(openai_mock, "gpt-json").infer(
        request(function_type="json", json_mode="strict", output_schema=schema), CTX
    )
    assert openai_mock.last()["body"]["text"] == {
        "format": {"type": "json_schema", "name": "response", "strict": True, "schema": schema}
    }
    assert response.content == [Text(text='{"answer":"42"}')]
    image = File(file_type="base64", data=PNG, mime_type="image/png")
    await provider(openai_mock).infer(request(messages=[RequestMessage(role="user", content=[image])]), CTX)
    assert openai_mock.last()["body"]["input"][0]["content"] == [
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"}
    ]
    response = await provider(openai_mock, "gpt-incomplete").infer(request(), CTX)
    assert response.finish_reason == FinishReason.LENGTH


async def test_errors(openai_mock):
    with pytest.raises(ProviderError, match="HTTP 500") as caught:
        await provider(openai_mock, "gpt-500").infer(request(), CTX)
    assert caught.value.status_code == 502
    with pytest.raises(ProviderError, match="Incorrect API key") as caught:
        await provider(openai_mock).infer(request(), CallContext(credentials={"openai": "sk-wrong-key"}))
    assert caught.value.status_code == 401
