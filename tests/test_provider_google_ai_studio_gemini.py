"""Google AI Studio's Gemini API, against a server speaking `generateContent` and its SSE stream."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from pydantic import TypeAdapter

from tensorzero_ray.api.gateway import create_app
from tensorzero_ray.config import load_config
from tensorzero_ray.config.models import ProviderConfig
from tensorzero_ray.errors import ApiKeyMissing, ProviderError
from tensorzero_ray.functions.routers import LocalRouters
from tensorzero_ray.providers import CallContext, build_provider
from tensorzero_ray.types import (
    File,
    FinishReason,
    Text,
    TextChunk,
    Thought,
    ThoughtChunk,
    ToolCall,
    ToolCallChunk,
    ToolCallOutput,
    ToolResult,
)
from tensorzero_ray.types.model import ModelInferenceRequest, RequestMessage, ToolDefinition, ToolSettings

PROVIDER = TypeAdapter(ProviderConfig)
CTX = CallContext(credentials={"google": "aistudio-test-key"})
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()


def provider(mock, model="gemini-ok"):
    config = PROVIDER.validate_python(
        {
            "type": "google_ai_studio_gemini",
            "model_name": model,
            "api_base": f"{mock.url}/v1beta/",
            "api_key_location": "dynamic::google",
        }
    )
    return build_provider("p", config, timeout_s=5)


def request(**kwargs) -> ModelInferenceRequest:
    messages = kwargs.pop("messages", [RequestMessage(role="user", content=[Text(text="Hi")])])
    return ModelInferenceRequest(system="Be brief.", messages=messages, **kwargs)


async def test_request_fields_and_response(google_mock):
    response = await provider(google_mock).infer(
        request(temperature=0.2, max_tokens=50, seed=7, top_p=0.9, stop_sequences=["END"]), CTX
    )
    sent = google_mock.last()
    assert sent["path"] == "/v1beta/models/gemini-ok:generateContent"
    assert sent["headers"]["x-goog-api-key"] == "aistudio-test-key"
    assert sent["body"] == {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        "systemInstruction": {"role": "system", "parts": [{"text": "Be brief."}]},
        "generationConfig": {
            "temperature": 0.2,
            "topP": 0.9,
            "maxOutputTokens": 50,
            "seed": 7,
            "stopSequences": ["END"],
        },
    }
    assert response.content == [Text(text="Hello from Gemini mock")]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 5)
    assert response.usage.provider_cache_read_input_tokens == 3
    assert response.finish_reason == FinishReason.STOP
    assert "aistudio-test-key" not in response.raw_request + response.raw_response


async def test_streaming_joins_the_text_and_reports_usage(google_mock):
    chunks = [c async for c in provider(google_mock).stream(request(), CTX)]
    assert google_mock.last()["path"] == "/v1beta/models/gemini-ok:streamGenerateContent"
    assert google_mock.last()["query"] == {"alt": "sse"}
    text = "".join(p.text for c in chunks for p in c.content if isinstance(p, TextChunk))
    assert text == "Hello from Gemini mock"
    final = chunks[-1]
    assert (final.usage.input_tokens, final.usage.output_tokens) == (12, 5)
    assert final.finish_reason == FinishReason.STOP


async def test_a_stream_cut_before_its_finish_reason_is_an_error(google_mock):
    chunks = [c async for c in provider(google_mock, "gemini-cut").stream(request(), CTX)]
    assert chunks[-1].fatal
    assert "ended without a finish reason" in chunks[-1].error


async def test_tool_call_round_trip_keeps_the_thought_signature(google_mock):
    settings = ToolSettings(
        tools=[ToolDefinition(name="get_weather", description="Weather", parameters={"type": "object"})],
        tool_choice="required",
    )
    response = await provider(google_mock, "gemini-tool").infer(request(tool_settings=settings), CTX)
    body = google_mock.last()["body"]
    assert body["tools"] == [
        {"functionDeclarations": [{"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}}]}
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    signature, call = response.content
    assert signature == Thought(signature="sig-call", provider_type="google_ai_studio_gemini")
    assert isinstance(call, ToolCallOutput)
    assert (call.raw_name, call.raw_arguments) == ("get_weather", '{"city":"Tokyo"}')
    assert response.finish_reason == FinishReason.TOOL_CALL

    history = [
        RequestMessage(role="user", content=[Text(text="Weather?")]),
        RequestMessage(
            role="assistant",
            content=[signature, ToolCall(id=call.id, name="get_weather", arguments=call.raw_arguments)],
        ),
        RequestMessage(role="user", content=[ToolResult(id=call.id, name="get_weather", result='{"temp": 21}')]),
    ]
    await provider(google_mock).infer(request(messages=history, tool_settings=settings), CTX)
    contents = google_mock.last()["body"]["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Tokyo"}}, "thoughtSignature": "sig-call"}],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp": 21}}}],
    }


async def test_streamed_tool_call(google_mock):
    pieces = [p async for c in provider(google_mock, "gemini-tool").stream(request(), CTX) for p in c.content]
    calls = [p for p in pieces if isinstance(p, ToolCallChunk)]
    assert [(c.raw_name, c.raw_arguments) for c in calls] == [("get_weather", '{"city":"Tokyo"}')]
    assert [p.signature for p in pieces if isinstance(p, ThoughtChunk)] == ["sig-call"]


async def test_thoughts_come_back_and_are_sent_back(google_mock):
    response = await provider(google_mock, "gemini-thinking").infer(request(thinking_budget_tokens=512), CTX)
    assert google_mock.last()["body"]["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 512,
        "includeThoughts": True,
    }
    thought, text = response.content
    assert thought == Thought(text="Let me think", signature="sig-1", provider_type="google_ai_studio_gemini")
    assert text == Text(text="Hello from Gemini mock")
    assert response.usage.output_tokens == 5 + 7
    history = [
        RequestMessage(role="user", content=[Text(text="Q")]),
        RequestMessage(role="assistant", content=[thought, text]),
        RequestMessage(role="user", content=[Text(text="And?")]),
    ]
    await provider(google_mock).infer(request(messages=history), CTX)
    assert google_mock.last()["body"]["contents"][1]["parts"] == [
        {"text": "Let me think", "thought": True, "thoughtSignature": "sig-1"},
        {"text": "Hello from Gemini mock"},
    ]


async def test_json_modes(google_mock):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    response = await provider(google_mock, "gemini-json").infer(
        request(function_type="json", json_mode="strict", output_schema=schema), CTX
    )
    config = google_mock.last()["body"]["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    assert response.content == [Text(text='{"answer":"42"}')]

    response = await provider(google_mock, "gemini-tool").infer(
        request(function_type="json", json_mode="tool", output_schema=schema), CTX
    )
    body = google_mock.last()["body"]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["respond"]}}
    assert body["tools"][0]["functionDeclarations"][0]["parameters"] == schema
    assert response.content == [Text(text='{"city":"Tokyo"}')]


async def test_an_image_goes_inline(google_mock):
    image = File(file_type="base64", data=PNG, mime_type="image/png")
    messages = [RequestMessage(role="user", content=[Text(text="What is this?"), image])]
    response = await provider(google_mock, "gemini-image").infer(request(messages=messages), CTX)
    parts = google_mock.last()["body"]["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": PNG}}
    assert response.content == [Text(text=f"I see image/png of {len(PNG)} base64 chars")]


async def test_errors_keep_the_providers_message_and_status(google_mock):
    with pytest.raises(ProviderError, match='Unknown name \\\\"bogus\\\\"') as caught:
        await provider(google_mock, "gemini-400").infer(request(), CTX)
    assert caught.value.status_code == 400
    with pytest.raises(ProviderError, match="HTTP 500") as caught:
        await provider(google_mock, "gemini-500").infer(request(), CTX)
    assert caught.value.status_code == 502
    with pytest.raises(ProviderError, match="API key not valid"):
        await provider(google_mock).infer(request(), CallContext(credentials={"google": "wrong-key-123"}))
    with pytest.raises(ApiKeyMissing, match="dynamic::google"):
        await provider(google_mock).infer(request(), CallContext())


async def test_through_the_gateway_native_and_openai_compatible(google_mock, tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLE_AI_STUDIO_API_KEY", google_mock.api_key)
    path = tmp_path / "tensorzero.toml"
    path.write_text(
        f"""
[models.gemini]
routing = ["google"]
[models.gemini.providers.google]
type = "google_ai_studio_gemini"
model_name = "gemini-ok"
api_base = "{google_mock.url}/v1beta/"
"""
    )
    config = load_config(path)
    transport = httpx.ASGITransport(app=create_app(config, LocalRouters(config, None)))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        native = await client.post(
            "/inference", json={"model_name": "gemini", "input": {"messages": [{"role": "user", "content": "Hi"}]}}
        )
        assert native.status_code == 200, native.text
        assert native.json()["content"] == [{"type": "text", "text": "Hello from Gemini mock"}]
        streamed = await client.post(
            "/openai/v1/chat/completions",
            json={
                "model": "tensorzero::model_name::gemini",
                "stream": True,
                "messages": [{"role": "user", "content": "Hi"}],
            },
        )
        assert streamed.status_code == 200, streamed.text
        deltas = [
            json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
            for line in streamed.text.splitlines()
            if line.startswith("data: {")
        ]
        assert "".join(deltas) == "Hello from Gemini mock"
