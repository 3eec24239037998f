"""Anthropic's models on Vertex AI: the Messages API at `rawPredict`, with a bearer token."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter

from tensorzero_ray.config.models import ProviderConfig
from tensorzero_ray.errors import ProviderError
from tensorzero_ray.providers import CallContext, build_provider
from tensorzero_ray.types import FinishReason, Text, TextChunk, Thought, ToolCallOutput
from tensorzero_ray.types.model import ModelInferenceRequest, RequestMessage, ToolDefinition, ToolSettings

PROVIDER = TypeAdapter(ProviderConfig)


def provider(mock, service_account_file, model="claude-ok"):
    config = PROVIDER.validate_python(
        {
            "type": "gcp_vertex_anthropic",
            "model_id": model,
            "location": "europe-west1",
            "project_id": "test-project",
            "credential_location": f"path::{service_account_file}",
            "api_base": f"{mock.url}/v1/",
        }
    )
    return build_provider("p", config, timeout_s=5)


def request(**kwargs) -> ModelInferenceRequest:
    kwargs.setdefault("max_tokens", 100)
    return ModelInferenceRequest(
        system="Be brief.", messages=[RequestMessage(role="user", content=[Text(text="Hi")])], **kwargs
    )


async def test_messages_at_raw_predict(google_mock, service_account_file):
    response = await provider(google_mock, service_account_file).infer(request(), CallContext())
    sent = google_mock.last()
    assert sent["path"] == (
        "/v1/projects/test-project/locations/europe-west1/publishers/anthropic/models/claude-ok:rawPredict"
    )
    assert sent["headers"]["authorization"].startswith("Bearer ya29.mock-")
    assert sent["body"] == {
        "anthropic_version": "vertex-2023-10-16",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    }
    assert response.content == [Text(text="Hello from Claude mock")]
    assert response.finish_reason == FinishReason.STOP


async def test_streaming_at_stream_raw_predict(google_mock, service_account_file):
    chunks = [c async for c in provider(google_mock, service_account_file).stream(request(), CallContext())]
    assert google_mock.last()["path"].endswith("/models/claude-ok:streamRawPredict")
    assert "".join(p.text for c in chunks for p in c.content if isinstance(p, TextChunk)) == "Hello from Claude mock"
    assert chunks[-1].finish_reason == FinishReason.STOP


async def test_tools_and_thinking(google_mock, service_account_file):
    settings = ToolSettings(tools=[ToolDefinition(name="get_weather", parameters={"type": "object"})])
    response = await provider(google_mock, service_account_file, "claude-tool").infer(
        request(tool_settings=settings), CallContext()
    )
    assert google_mock.last()["body"]["tool_choice"] == {"type": "auto"}
    assert response.content[1] == ToolCallOutput(id="toolu_1", raw_name="get_weather", raw_arguments='{"city":"Tokyo"}')
    response = await provider(google_mock, service_account_file, "claude-thinking").infer(
        request(thinking_budget_tokens=1024), CallContext()
    )
    assert response.content[0] == Thought(text="Let me think", signature="sig123", provider_type="gcp_vertex_anthropic")


async def test_a_refusal_keeps_its_message(google_mock, service_account_file):
    with pytest.raises(ProviderError, match="max_tokens: Field required") as caught:
        await provider(google_mock, service_account_file).infer(
            request(extra_body=[{"pointer": "/max_tokens", "delete": True}]), CallContext()
        )
    assert caught.value.status_code == 400
