"""POST /inference through the gateway's ASGI app with in-process routers: responses, streams,
fallbacks, retries, timeouts and every kind of bad input."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from tensorzero_ray.ids import uuid7
from tensorzero_ray.providers.dummy import MEGUMIN, STREAM_CHUNKS

SYSTEM = {"assistant_name": "Alfred"}
HELLO = {"system": SYSTEM, "messages": [{"role": "user", "content": "Hello"}]}
PLAIN = {"messages": [{"role": "user", "content": "Hello"}]}


def events(text: str) -> list:
    assert text.endswith("data: [DONE]\n\n")
    frames = [f.removeprefix("data: ") for f in text.strip().split("\n\n")]
    return [orjson.loads(f) for f in frames[:-1]]


async def infer(gateway, **body):
    return await gateway.post("/inference", json=body)


async def test_chat_inference(gateway):
    r = await infer(gateway, function_name="basic_test", input=HELLO, tags={"user": "u-42"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["variant_name"] == "test"
    assert body["content"] == [{"type": "text", "text": MEGUMIN}]
    assert body["usage"] == {"input_tokens": 10, "output_tokens": 1, "cost": 0.00018}
    assert body["finish_reason"] == "stop"
    assert uuid.UUID(body["inference_id"]).version == 7
    assert uuid.UUID(body["episode_id"]).version == 7
    assert r.headers["x-tensorzero-gateway-version"]


async def test_system_template_renders_schema_arguments(gateway):
    r = await infer(gateway, function_name="basic_test", variant_name="echo", input=HELLO)
    echoed = orjson.loads(r.json()["content"][0]["text"])
    assert echoed["system"] == "You are a helpful and friendly assistant named Alfred"
    assert echoed["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]


async def test_streaming_chat(gateway):
    r = await infer(gateway, function_name="basic_test", input=HELLO, stream=True)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    chunks = events(r.text)
    assert [c["content"][0]["text"] for c in chunks[:-1]] == STREAM_CHUNKS
    assert all(c["content"][0]["id"] == "0" for c in chunks[:-1])
    final = chunks[-1]
    assert final["content"] == []
    assert final["usage"] == {"input_tokens": 10, "output_tokens": 16, "cost": 0.00027}
    assert final["finish_reason"] == "stop"
    assert len({(c["inference_id"], c["episode_id"], c["variant_name"]) for c in chunks}) == 1


async def test_json_function(gateway):
    input_ = {
        "messages": [
            {"role": "user", "content": [{"type": "template", "name": "user", "arguments": {"country": "Japan"}}]}
        ]
    }
    r = await infer(gateway, function_name="json_success", input=input_)
    assert r.status_code == 200, r.text
    assert r.json()["output"] == {"raw": '{"answer":"Hello"}', "parsed": {"answer": "Hello"}}


async def test_json_function_legacy_object_content_and_dynamic_output_schema(gateway):
    input_ = {"messages": [{"role": "user", "content": {"country": "Japan"}}]}
    schema = {"type": "object", "properties": {"response": {"type": "string"}}, "required": ["response"]}
    r = await infer(gateway, function_name="json_success", input=input_, output_schema=schema)
    assert r.status_code == 200, r.text
    assert r.json()["output"] == {"raw": '{"answer":"Hello"}', "parsed": None}


async def test_json_streaming_has_raw_deltas_and_no_parsed(gateway):
    input_ = {"messages": [{"role": "user", "content": {"country": "Japan"}}]}
    r = await infer(gateway, function_name="json_success", input=input_, stream=True, include_aggregated_response=True)
    chunks = events(r.text)
    assert "".join(c["raw"] for c in chunks) == '{"name":"John","age":30}'
    assert all("parsed" not in c for c in chunks)
    assert chunks[-1]["aggregated_response"]["output"]["raw"] == '{"name":"John","age":30}'


async def test_model_name_shorthand_and_configured_model(gateway):
    r = await infer(gateway, model_name="dummy::alternate", input=PLAIN)
    assert r.status_code == 200, r.text
    assert r.json()["variant_name"] == "dummy::alternate"
    r = await infer(gateway, model_name="gpt", input=PLAIN)
    assert r.json()["content"] == [{"type": "text", "text": "Hello from the mock"}]


async def test_weighted_sampling_is_episode_sticky_through_the_api(gateway):
    episode = str(uuid7())
    seen = set()
    for _ in range(4):
        r = await infer(gateway, function_name="weighted", episode_id=episode, input=PLAIN)
        seen.add(r.json()["variant_name"])
        assert r.json()["episode_id"] == episode
    assert len(seen) == 1 and seen <= {"a", "b"}


async def test_variant_fallback_after_retries(gateway):
    r = await infer(gateway, function_name="fallbacks", input=PLAIN)
    assert r.status_code == 200, r.text
    assert r.json()["variant_name"] == "rescue"


async def test_all_variants_failed_lists_every_provider_error(gateway):
    r = await infer(gateway, function_name="all_fail", input=PLAIN)
    assert r.status_code == 502
    message = r.json()["error"]
    assert message.startswith("All variants failed with errors:")
    assert "first: Error sending request to Dummy provider for model 'error'." in message
    assert "second: Error sending request to Dummy provider for model 'error_two'." in message
    assert "Dummy provider for model 'error_b'" in message


async def test_pinned_variant_is_not_replaced(gateway):
    r = await infer(gateway, function_name="fallbacks", variant_name="broken", input=PLAIN)
    assert r.status_code == 500
    assert r.json()["error"].startswith("All model providers failed to infer with errors: first:")


async def test_variant_retries_recover_a_flaky_model(gateway):
    for _ in range(4):
        r = await infer(gateway, function_name="retried", input=PLAIN)
        assert r.status_code == 200, r.text


async def test_provider_fallback_within_a_model(gateway, openai_mock):
    r = await infer(gateway, function_name="provider_fallback", input=PLAIN)
    assert r.status_code == 200, r.text
    assert [req["body"]["model"] for req in openai_mock.requests[-2:]] == ["gpt-500", "gpt-ok-noauth"]


@pytest.mark.parametrize(
    "variant, fragment",
    [
        ("slow_model", "Model slow timed out"),
        ("slow_variant", "Variant slow_variant timed out"),
    ],
)
async def test_model_and_variant_timeouts(gateway, variant, fragment):
    started = time.monotonic()
    r = await infer(gateway, function_name="timeouts", variant_name=variant, input=PLAIN)
    assert time.monotonic() - started < 2
    assert r.status_code == 408
    assert fragment in r.json()["error"]


async def test_provider_timeout_falls_back_to_next_provider(gateway):
    started = time.monotonic()
    r = await infer(gateway, function_name="timeouts", variant_name="provider_fallback", input=PLAIN)
    assert r.status_code == 200, r.text
    assert time.monotonic() - started < 2
    r = await infer(gateway, function_name="timeouts", variant_name="provider_fallback", input=PLAIN, stream=True)
    assert r.status_code == 200
    assert events(r.text)[0]["content"][0]["text"] == STREAM_CHUNKS[0]


async def test_streaming_ttft_timeout_before_first_chunk_is_a_plain_error(gateway):
    r = await infer(gateway, function_name="timeouts", variant_name="slow_model", input=PLAIN, stream=True)
    assert r.status_code == 408
    assert r.headers["content-type"] == "application/json"


async def test_stream_broken_mid_way_ends_with_an_error_event(gateway):
    r = await infer(gateway, function_name="stream_break", input=PLAIN, stream=True)
    chunks = events(r.text)
    assert [c["content"][0]["text"] for c in chunks[:2]] == ["Hello", " from"]
    assert chunks[-1]["error"].startswith("Error from openai client")


async def test_non_fatal_stream_error_event_and_stream_continues(gateway):
    r = await infer(gateway, model_name="dummy::err_in_stream", input=PLAIN, stream=True)
    chunks = events(r.text)
    errors = [i for i, c in enumerate(chunks) if "error" in c]
    assert errors == [3]
    assert len(chunks) == 3 + 1 + 12 + 1


async def test_anthropic_through_the_gateway(gateway):
    r = await infer(gateway, function_name="anthropic_chat", input=PLAIN, stream=True)
    chunks = events(r.text)
    assert "".join(c["content"][0]["text"] for c in chunks[:-1]) == "Hello from Claude mock"


async def test_tool_calls_are_validated(gateway):
    r = await infer(gateway, function_name="weather_helper", input=PLAIN)
    assert r.json()["content"] == [
        {
            "type": "tool_call",
            "id": "0",
            "raw_name": "get_temperature",
            "raw_arguments": '{"location":"Brooklyn","units":"celsius"}',
            "name": "get_temperature",
            "arguments": {"location": "Brooklyn", "units": "celsius"},
        }
    ]
    assert r.json()["finish_reason"] == "tool_call"


async def test_params_override_variant_settings(gateway, openai_mock):
    r = await infer(
        gateway,
        function_name="openai_chat",
        input=PLAIN,
        dryrun=True,
        params={"chat_completion": {"max_tokens": 5, "temperature": 0.9}},
    )
    assert r.status_code == 200, r.text
    sent = openai_mock.last()["body"]
    assert (sent["max_completion_tokens"], sent["temperature"]) == (5, 0.9)
    await infer(gateway, function_name="openai_chat", input=PLAIN)
    assert openai_mock.last()["body"]["max_completion_tokens"] == 100


async def test_request_extra_body_is_scoped(gateway, openai_mock):
    extra = [
        {"pointer": "/top_k", "value": 3, "model_name": "gpt"},
        {"pointer": "/min_p", "value": 0.1, "model_name": "other"},
        {"pointer": "/user", "value": "u1", "variant_name": "gpt"},
    ]
    headers = [{"name": "x-trace", "value": "t1"}]
    r = await infer(gateway, function_name="openai_chat", input=PLAIN, extra_body=extra, extra_headers=headers)
    assert r.status_code == 200, r.text
    sent = openai_mock.last()
    assert sent["body"]["top_k"] == 3 and sent["body"]["user"] == "u1" and "min_p" not in sent["body"]
    assert sent["headers"]["x-trace"] == "t1"


async def test_internal_requests_may_use_reserved_tags(gateway):
    r = await infer(gateway, function_name="basic_test", input=HELLO, internal=True, tags={"tensorzero::eval": "1"})
    assert r.status_code == 200, r.text


async def test_dynamic_credentials(gateway):
    r = await infer(gateway, function_name="keyed", input=PLAIN, credentials={"dummy_key": "good_key"})
    assert r.status_code == 200, r.text
    r = await infer(gateway, function_name="keyed", input=PLAIN)
    assert r.status_code == 502
    assert "API key missing for provider dummy" in r.json()["error"]
    assert "good_key" not in r.text


async def test_include_raw_response_and_usage(gateway):
    r = await infer(
        gateway, function_name="openai_chat", input=PLAIN, include_raw_response=True, include_raw_usage=True
    )
    body = r.json()
    assert "chatcmpl-1" in body["raw_response"][0]["data"]
    assert body["raw_usage"][0]["data"]["prompt_tokens"] == 12


async def test_streams_report_the_providers_own_usage(gateway):
    r = await infer(gateway, function_name="openai_chat", input=PLAIN, stream=True, include_raw_usage=True)
    final = events(r.text)[-1]
    assert final["raw_usage"][0]["provider_type"] == "openai"
    assert final["raw_usage"][0]["data"]["prompt_tokens"] == final["usage"]["input_tokens"]
    r = await infer(gateway, function_name="anthropic_chat", input=PLAIN, stream=True, include_raw_usage=True)
    data = events(r.text)[-1]["raw_usage"][0]["data"]
    assert (data["input_tokens"], data["output_tokens"]) == (20, 4), "message_start's input and the final output"


async def test_status_and_health(gateway):
    status = (await gateway.get("/status")).json()
    assert status["status"] == "ok" and len(status["config_hash"]) == 64
    assert (await gateway.get("/health")).json()["gateway"] == "ok"


BAD = [
    pytest.param(b'{"function_name": ', 400, "Failed to parse the request body as JSON", id="malformed-json"),
    pytest.param(b"[1, 2]", 400, "must be a JSON object", id="not-an-object"),
    pytest.param(
        {"function_name": "basic_test", "input": HELLO, "temperature": 1},
        400,
        "`temperature`: unknown key",
        id="unknown-top-level-field",
    ),
    pytest.param(
        {"function_name": "basic_test", "input": HELLO, "stream": "yes"},
        400,
        "`stream`: Input should be a valid boolean",
        id="wrong-type",
    ),
    pytest.param(
        {"function_name": "basic_test", "model_name": "gpt", "input": PLAIN},
        400,
        "Invalid inference target: exactly one of",
        id="both-targets",
    ),
    pytest.param({"input": PLAIN}, 400, "Invalid inference target: exactly one of", id="neither-target"),
    pytest.param(
        {"model_name": "gpt", "variant_name": "x", "input": PLAIN},
        400,
        "cannot be set together",
        id="model-name-with-variant",
    ),
    pytest.param({"function_name": "nope", "input": PLAIN}, 404, "Unknown function: nope", id="unknown-function"),
    pytest.param(
        {"function_name": "basic_test", "variant_name": "nope", "input": HELLO},
        404,
        "Unknown variant: nope",
        id="unknown-variant",
    ),
    pytest.param({"model_name": "nope", "input": PLAIN}, 404, "Unknown model: nope", id="unknown-model"),
    pytest.param(
        {"function_name": "basic_test", "input": PLAIN},
        400,
        "Input validation failed with messages: ['input.system: the function has a system schema",
        id="missing-system",
    ),
    pytest.param(
        {"function_name": "basic_test", "input": {"system": {"assistant_name": 7}, "messages": []}},
        400,
        "input.system.assistant_name: JSON Schema validation failed: 7 is not of type 'string'",
        id="schema-type",
    ),
    pytest.param(
        {"function_name": "json_success", "input": {"messages": [{"role": "user", "content": {"city": "x"}}]}},
        400,
        "input.messages[0].content[0].arguments: JSON Schema validation failed: 'country' is a required property",
        id="template-arguments",
    ),
    pytest.param(
        {"function_name": "basic_test", "input": {"system": SYSTEM, "messages": [{"role": "system", "content": "x"}]}},
        400,
        "`input.messages.0.role`: Input should be 'user' or 'assistant'",
        id="system-role-in-messages",
    ),
    pytest.param(
        {
            "function_name": "basic_test",
            "input": {"system": SYSTEM, "messages": [{"role": "user", "content": [{"type": "video", "url": "x"}]}]},
        },
        400,
        "input.messages.0.content.0",
        id="bad-block-type",
    ),
    pytest.param(
        {"function_name": "basic_test", "input": HELLO, "episode_id": "not-a-uuid"},
        400,
        "Invalid Episode ID",
        id="bad-episode-id",
    ),
    pytest.param(
        {"function_name": "basic_test", "input": HELLO, "episode_id": str(uuid.uuid4())},
        400,
        "Invalid Episode ID: Version must be 7",
        id="uuid4-episode-id",
    ),
    pytest.param(
        {"function_name": "basic_test", "input": HELLO, "episode_id": str(uuid7(int(time.time() * 1000) + 3_600_000))},
        400,
        "Invalid Episode ID: Timestamp is in the future",
        id="future-episode-id",
    ),
    pytest.param(
        {"function_name": "basic_test", "input": HELLO, "tags": {"tensorzero::x": "1"}},
        400,
        "Tag name cannot start with 'tensorzero::': tensorzero::x",
        id="reserved-tag",
    ),
    pytest.param(
        {"function_name": "basic_test", "input": HELLO, "output_schema": {"type": 5}},
        400,
        "Invalid `output_schema`",
        id="bad-output-schema-on-chat",
    ),
    pytest.param(
        {"function_name": "basic_test", "input": HELLO, "include_aggregated_response": True},
        400,
        "requires `stream: true`",
        id="aggregated-without-stream",
    ),
    pytest.param(
        {"function_name": "weather_helper", "input": PLAIN, "allowed_tools": ["nope"]},
        400,
        "Tool not found: nope",
        id="unknown-allowed-tool",
    ),
    pytest.param(
        {"function_name": "basic_test", "input": HELLO, "cache_options": {"enabled": "sometimes"}},
        400,
        "cache_options.enabled",
        id="cache-mode-unknown",
    ),
]


@pytest.mark.parametrize("body, status, fragment", BAD)
async def test_bad_input_gets_a_4xx_naming_the_problem(gateway, body, status, fragment):
    if isinstance(body, bytes):
        r = await gateway.post("/inference", content=body, headers={"content-type": "application/json"})
    else:
        r = await gateway.post("/inference", json=body)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]


async def test_oversized_body_is_rejected(gateway):
    r = await gateway.post("/inference", content=b"x", headers={"content-length": str(200 * 1024 * 1024)})
    assert r.status_code == 413
    assert "larger than" in r.json()["error"]


async def test_unknown_route(gateway):
    r = await gateway.get("/nope")
    assert r.status_code == 404
    assert r.json() == {"error": "Route not found: GET /nope"}
