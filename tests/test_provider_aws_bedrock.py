"""AWS Bedrock's Converse API against a server that recomputes each SigV4 signature with
botocore and streams AWS's binary event-stream encoding."""

from __future__ import annotations

import base64

import pytest
from pydantic import TypeAdapter

from tensorzero_ray.config import ConfigError, load_config
from tensorzero_ray.config.models import ProviderConfig
from tensorzero_ray.errors import ProviderError
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
from tests.mocks.bedrock_server import BedrockMock
from tests.mocks.server import BackgroundServer

PROVIDER = TypeAdapter(ProviderConfig)
MODEL = "anthropic.claude-ok-v1:0"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 40).decode()


@pytest.fixture(scope="module")
def bedrock_mock():
    mock = BedrockMock()
    with BackgroundServer(mock.app) as server:
        mock.url = server.url
        yield mock


@pytest.fixture
def aws_keys(monkeypatch, bedrock_mock):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", bedrock_mock.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", bedrock_mock.secret_key)
    monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)


def provider(mock, model=MODEL, **fields):
    fields.setdefault("region", "eu-west-3")
    config = PROVIDER.validate_python({"type": "aws_bedrock", "model_id": model, "endpoint_url": mock.url, **fields})
    return build_provider("p", config, timeout_s=5)


def request(**kwargs) -> ModelInferenceRequest:
    messages = kwargs.pop("messages", [RequestMessage(role="user", content=[Text(text="Hi")])])
    return ModelInferenceRequest(system="Be brief.", messages=messages, **kwargs)


async def test_a_signed_converse_call(bedrock_mock, aws_keys):
    response = await provider(bedrock_mock).infer(request(max_tokens=64, temperature=0.3), CallContext())
    sent = bedrock_mock.last()
    assert sent["path"] == "/model/anthropic.claude-ok-v1%3A0/converse"
    assert sent["auth"] == "sigv4" and sent["region"] == "eu-west-3"
    assert f"Signature={sent['expected_signature']}" in sent["headers"]["authorization"]
    assert sent["body"] == {
        "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 64, "temperature": 0.3},
    }
    assert response.content == [Text(text="Hello from Bedrock mock")]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (15, 6)
    assert (response.usage.provider_cache_read_input_tokens, response.usage.provider_cache_write_input_tokens) == (4, 1)
    assert response.finish_reason == FinishReason.STOP
    assert bedrock_mock.secret_key not in response.raw_request + response.raw_response


async def test_keys_from_the_config_with_a_session_token(bedrock_mock, monkeypatch):
    monkeypatch.setenv("MY_KEY", bedrock_mock.access_key)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    bedrock = provider(
        bedrock_mock,
        access_key_id="env::MY_KEY",
        secret_access_key="dynamic::aws_secret",
        session_token="dynamic::aws_token",
    )
    await bedrock.infer(
        request(), CallContext(credentials={"aws_secret": bedrock_mock.secret_key, "aws_token": "tok-1"})
    )
    assert bedrock_mock.last()["headers"]["x-amz-security-token"] == "tok-1"
    assert bedrock_mock.last()["auth"] == "sigv4"
    with pytest.raises(ProviderError, match="signature we calculated does not match") as caught:
        await bedrock.infer(request(), CallContext(credentials={"aws_secret": "wrong-secret", "aws_token": "tok-1"}))
    assert caught.value.status_code == 403


async def test_a_bedrock_api_key_is_a_bearer_token(bedrock_mock, monkeypatch):
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", bedrock_mock.bearer_key)
    await provider(bedrock_mock).infer(request(), CallContext())
    assert bedrock_mock.last()["auth"] == "bearer"


async def test_region_from_the_request(bedrock_mock, aws_keys):
    await provider(bedrock_mock, region="dynamic::region").infer(
        request(), CallContext(credentials={"region": "ap-south-1"})
    )
    assert bedrock_mock.last()["region"] == "ap-south-1"


async def test_converse_stream(bedrock_mock, aws_keys):
    chunks = [c async for c in provider(bedrock_mock).stream(request(), CallContext())]
    sent = bedrock_mock.last()
    assert sent["path"].endswith("/converse-stream") and sent["auth"] == "sigv4"
    assert "".join(p.text for c in chunks for p in c.content if isinstance(p, TextChunk)) == "Hello from Bedrock mock"
    assert [c.finish_reason for c in chunks if c.finish_reason] == [FinishReason.STOP]
    assert (chunks[-1].usage.input_tokens, chunks[-1].usage.output_tokens) == (15, 6)


async def test_a_stream_without_its_end_or_with_an_exception_is_an_error(bedrock_mock, aws_keys):
    chunks = [c async for c in provider(bedrock_mock, "claude-cut").stream(request(), CallContext())]
    assert chunks[-1].fatal and "ended without `messageStop`" in chunks[-1].error
    chunks = [c async for c in provider(bedrock_mock, "claude-throttle").stream(request(), CallContext())]
    assert chunks[-1].fatal and "throttlingException: Too many requests" in chunks[-1].error


async def test_tool_call_round_trip(bedrock_mock, aws_keys):
    settings = ToolSettings(
        tools=[ToolDefinition(name="get_weather", description="Weather", parameters={"type": "object"})],
        tool_choice="required",
    )
    response = await provider(bedrock_mock, "claude-tool").infer(request(tool_settings=settings), CallContext())
    assert bedrock_mock.last()["body"]["toolConfig"] == {
        "tools": [
            {"toolSpec": {"name": "get_weather", "description": "Weather", "inputSchema": {"json": {"type": "object"}}}}
        ],
        "toolChoice": {"any": {}},
    }
    call = response.content[1]
    assert call == ToolCallOutput(id="tooluse_1", raw_name="get_weather", raw_arguments='{"city":"Tokyo"}')
    assert response.finish_reason == FinishReason.TOOL_CALL
    history = [
        RequestMessage(role="user", content=[Text(text="Weather?")]),
        RequestMessage(
            role="assistant", content=[ToolCall(id=call.id, name=call.raw_name, arguments=call.raw_arguments)]
        ),
        RequestMessage(role="user", content=[ToolResult(id=call.id, name="get_weather", result="sunny")]),
    ]
    await provider(bedrock_mock).infer(request(messages=history, tool_settings=settings), CallContext())
    messages = bedrock_mock.last()["body"]["messages"]
    assert messages[1]["content"] == [
        {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Tokyo"}}}
    ]
    assert messages[2]["content"] == [{"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "sunny"}]}}]

    pieces = [
        p
        async for c in provider(bedrock_mock, "claude-tool").stream(request(tool_settings=settings), CallContext())
        for p in c.content
    ]
    calls = [p for p in pieces if isinstance(p, ToolCallChunk)]
    assert {c.id for c in calls} == {"tooluse_1"} and calls[0].raw_name == "get_weather"
    assert "".join(c.raw_arguments for c in calls) == '{"city": "Tokyo"}'


async def test_reasoning_comes_back_and_is_sent_back(bedrock_mock, aws_keys):
    response = await provider(bedrock_mock, "claude-thinking").infer(
        request(thinking_budget_tokens=1024), CallContext()
    )
    assert bedrock_mock.last()["body"]["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 1024}
    }
    thought = response.content[0]
    assert thought == Thought(text="Let me think", signature="bedrock-sig", provider_type="aws_bedrock")
    history = [
        RequestMessage(role="user", content=[Text(text="Q")]),
        RequestMessage(role="assistant", content=[thought, Text(text="A")]),
        RequestMessage(role="user", content=[Text(text="More?")]),
    ]
    await provider(bedrock_mock).infer(request(messages=history), CallContext())
    assert bedrock_mock.last()["body"]["messages"][1]["content"][0] == {
        "reasoningContent": {"reasoningText": {"text": "Let me think", "signature": "bedrock-sig"}}
    }
    pieces = [
        p async for c in provider(bedrock_mock, "claude-thinking").stream(request(), CallContext()) for p in c.content
    ]
    thoughts = [p for p in pieces if isinstance(p, ThoughtChunk)]
    assert [(t.text, t.signature) for t in thoughts] == [("Let me think", None), (None, "bedrock-sig")]


async def test_json_functions_answer_through_the_respond_tool(bedrock_mock, aws_keys):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    response = await provider(bedrock_mock, "claude-json").infer(
        request(function_type="json", json_mode="strict", output_schema=schema), CallContext()
    )
    tool_config = bedrock_mock.last()["body"]["toolConfig"]
    assert tool_config["toolChoice"] == {"tool": {"name": "respond"}}
    assert tool_config["tools"][0]["toolSpec"]["inputSchema"] == {"json": schema}
    assert response.content == [Text(text='{"answer":"42"}')]
    assert response.finish_reason == FinishReason.STOP


async def test_an_image_goes_inline(bedrock_mock, aws_keys):
    image = File(file_type="base64", data=PNG, mime_type="image/png")
    messages = [RequestMessage(role="user", content=[Text(text="What?"), image])]
    response = await provider(bedrock_mock, "claude-image").infer(request(messages=messages), CallContext())
    assert bedrock_mock.last()["body"]["messages"][0]["content"][1] == {
        "image": {"format": "png", "source": {"bytes": PNG}}
    }
    assert response.content == [Text(text="I see png of 48 bytes")]


async def test_errors_keep_the_providers_message(bedrock_mock, aws_keys):
    with pytest.raises(ProviderError, match="The provided model identifier is invalid") as caught:
        await provider(bedrock_mock, "claude-400").infer(request(), CallContext())
    assert caught.value.status_code == 400
    with pytest.raises(ProviderError, match="HTTP 500") as caught:
        await provider(bedrock_mock, "claude-500").infer(request(), CallContext())
    assert caught.value.status_code == 502


def _config(tmp_path, provider_lines: str):
    path = tmp_path / "tensorzero.toml"
    path.write_text(
        f"""
[models.claude]
routing = ["bedrock"]
[models.claude.providers.bedrock]
type = "aws_bedrock"
model_id = "{MODEL}"
{provider_lines}
"""
    )
    return path


def test_start_up_names_a_missing_region_or_key(tmp_path, monkeypatch):
    for variable in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    with pytest.raises(ConfigError, match="`region` is required"):
        load_config(_config(tmp_path, ""))
    with pytest.raises(ConfigError, match="no region found by the AWS SDK"):
        load_config(_config(tmp_path, "allow_auto_detect_region = true"))
    monkeypatch.setenv("AWS_REGION", "us-east-2")
    load_config(_config(tmp_path, "allow_auto_detect_region = true"))
    with pytest.raises(
        ConfigError, match="`access_key_id`.*`MISSING_KEY_VAR`, which|environment variable `MISSING_KEY_VAR` is not set"
    ):
        load_config(
            _config(
                tmp_path,
                'region = "us-east-1"\naccess_key_id = "env::MISSING_KEY_VAR"\nsecret_access_key = "env::MISSING_KEY_VAR"',
            )
        )
    with pytest.raises(ConfigError, match="set both `access_key_id` and `secret_access_key`"):
        load_config(_config(tmp_path, 'region = "us-east-1"\naccess_key_id = "env::X"'))
