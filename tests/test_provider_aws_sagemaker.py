"""A SageMaker endpoint hosting an OpenAI-compatible server, against a mock of SageMaker's
runtime API: signed invocations, and response streams whose parts cut the hosted server's
SSE bytes anywhere."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter

from tensorzero_ray.config.models import ProviderConfig
from tensorzero_ray.errors import ProviderError
from tensorzero_ray.inference.output import ChunkAggregator
from tensorzero_ray.providers import CallContext, build_provider
from tensorzero_ray.types import FinishReason, Text, ToolCallOutput
from tensorzero_ray.types.model import ModelInferenceRequest, RequestMessage, ToolDefinition, ToolSettings
from tests.mocks.sagemaker_server import SageMakerMock
from tests.mocks.server import BackgroundServer

PROVIDER = TypeAdapter(ProviderConfig)


@pytest.fixture(scope="module")
def sagemaker_mock():
    mock = SageMakerMock()
    with BackgroundServer(mock.app) as server:
        mock.url = server.url
        yield mock


def provider(mock, endpoint="chat-endpoint", model="gpt-ok", hosted="openai"):
    config = PROVIDER.validate_python(
        {
            "type": "aws_sagemaker",
            "endpoint_name": endpoint,
            "model_name": model,
            "hosted_provider": hosted,
            "region": "us-west-2",
            "endpoint_url": mock.url,
            "access_key_id": "dynamic::key",
            "secret_access_key": "dynamic::secret",
        }
    )
    return build_provider("p", config, timeout_s=5)


def ctx(mock) -> CallContext:
    return CallContext(credentials={"key": mock.access_key, "secret": mock.secret_key})


def request(**kwargs) -> ModelInferenceRequest:
    return ModelInferenceRequest(messages=[RequestMessage(role="user", content=[Text(text="Hi")])], **kwargs)


async def test_a_signed_invocation(sagemaker_mock):
    response = await provider(sagemaker_mock).infer(request(max_tokens=20), ctx(sagemaker_mock))
    sent = sagemaker_mock.last()
    assert sent["path"] == "/endpoints/chat-endpoint/invocations"
    assert sent["auth"] == "sigv4" and sent["region"] == "us-west-2"
    assert sent["body"] == {
        "model": "gpt-ok",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "max_completion_tokens": 20,
    }
    assert response.content == [Text(text="Hello from the mock")]
    assert response.finish_reason == FinishReason.STOP and response.usage.input_tokens is not None


async def test_tgi_sends_its_model_field(sagemaker_mock):
    await provider(sagemaker_mock, model="tgi", hosted="tgi").infer(request(), ctx(sagemaker_mock))
    assert sagemaker_mock.last()["body"]["model"] == "tgi"


async def test_a_response_stream_cut_anywhere_reassembles(sagemaker_mock):
    chunks = [c async for c in provider(sagemaker_mock).stream(request(), ctx(sagemaker_mock))]
    assert sagemaker_mock.last()["path"] == "/endpoints/chat-endpoint/invocations-response-stream"
    aggregate = ChunkAggregator()
    for chunk in chunks:
        for piece in chunk.content:
            aggregate.add(piece)
    assert aggregate.blocks() == [Text(text="Hello from the mock")]
    assert [c.finish_reason for c in chunks if c.finish_reason] == [FinishReason.STOP]
    assert not any(c.fatal for c in chunks)


async def test_tool_calls(sagemaker_mock):
    settings = ToolSettings(tools=[ToolDefinition(name="get_weather", parameters={"type": "object"})])
    response = await provider(sagemaker_mock, model="gpt-tool").infer(
        request(tool_settings=settings), ctx(sagemaker_mock)
    )
    assert sagemaker_mock.last()["body"]["tools"][0]["function"]["name"] == "get_weather"
    assert response.content[-1] == ToolCallOutput(id="call_1", raw_name="get_weather", raw_arguments='{"city":"Tokyo"}')


async def test_errors_and_a_broken_stream(sagemaker_mock):
    with pytest.raises(ProviderError, match="model crashed"):
        await provider(sagemaker_mock, endpoint="chat-failing").infer(request(), ctx(sagemaker_mock))
    chunks = [c async for c in provider(sagemaker_mock, endpoint="chat-crash").stream(request(), ctx(sagemaker_mock))]
    assert chunks[-1].fatal and "ModelStreamError: model stream broke" in chunks[-1].error
    wrong = CallContext(credentials={"key": sagemaker_mock.access_key, "secret": "not-the-secret"})
    with pytest.raises(ProviderError, match="signature we calculated does not match") as caught:
        await provider(sagemaker_mock).infer(request(), wrong)
    assert caught.value.status_code == 403
