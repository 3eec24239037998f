"""POST /openai/v1/chat/completions and /openai/v1/embeddings: OpenAI's wire format onto the
same routers, with TensorZero's extras and OpenAI's error shape."""

from __future__ import annotations

import base64

import orjson
import pytest

from tensorzero_ray.ids import uuid7
from tensorzero_ray.providers.dummy import MEGUMIN, STREAM_CHUNKS

SYSTEM_TEMPLATE = {
    "role": "system",
    "content": [{"type": "tensorzero::template", "name": "system", "arguments": {"assistant_name": "Alfred"}}],
}
USER = {"role": "user", "content": "Hello"}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_temperature",
        "description": "Weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}, "units": {"type": "string"}}},
    },
}


async def chat(gateway, **body):
    return await gateway.post("/openai/v1/chat/completions", json=body)


def sse(text: str) -> list[dict]:
    frames = [f.removeprefix("data: ") for f in text.strip().split("\n\n")]
    assert frames[-1] == "[DONE]"
    return [orjson.loads(f) for f in frames[:-1]]


async def test_function_call_with_template_system_and_extras(gateway):
    episode = str(uuid7())
    r = await chat(
        gateway,
        model="tensorzero::function_name::basic_test",
        messages=[SYSTEM_TEMPLATE, USER],
        **{"tensorzero::episode_id": episode, "tensorzero::tags": {"user": "u-42"}},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "tensorzero::function_name::basic_test::variant_name::test"
    assert body["episode_id"] == episode
    assert body["choices"][0]["message"] == {"role": "assistant", "content": MEGUMIN}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == 10 and body["usage"]["total_tokens"] == 11
    assert body["usage"]["tensorzero_cost"] == pytest.approx(0.00018)


async def test_model_name_target_and_standard_params(gateway, openai_mock):
    r = await chat(
        gateway,
        model="tensorzero::model_name::gpt",
        messages=[{"role": "system", "content": "Be brief."}, USER],
        temperature=0.3,
        max_tokens=40,
        max_completion_tokens=20,
        stop="END",
        seed=9,
    )
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "tensorzero::model_name::gpt"
    sent = openai_mock.last()["body"]
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (sent["temperature"], sent["max_completion_tokens"], sent["stop"], sent["seed"]) == (0.3, 20, ["END"], 9)


async def test_streaming_with_usage(gateway):
    r = await chat(
        gateway,
        model="tensorzero::function_name::basic_test",
        messages=[SYSTEM_TEMPLATE, USER],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = sse(r.text)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "".join(STREAM_CHUNKS)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    final = chunks[-1]
    assert final["choices"][0]["finish_reason"] == "stop"
    assert final["usage"]["prompt_tokens"] == 10 and final["usage"]["completion_tokens"] == 16
    assert all(c["usage"] is None for c in chunks[:-1])


async def test_streaming_without_usage_has_null_usage(gateway):
    r = await chat(gateway, model="tensorzero::model_name::dummy::good", messages=[USER], stream=True)
    assert all(c["usage"] is None for c in sse(r.text))


async def test_json_function_with_json_schema_response_format(gateway):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    r = await chat(
        gateway,
        model="tensorzero::function_name::json_success",
        messages=[{"role": "user", "content": [{"type": "text", "tensorzero::arguments": {"country": "Japan"}}]}],
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    )
    assert r.status_code == 200, r.text
    assert orjson.loads(r.json()["choices"][0]["message"]["content"]) == {"answer": "Hello"}


async def test_tools_and_tool_call_response(gateway):
    r = await chat(
        gateway,
        model="tensorzero::model_name::dummy::tool",
        messages=[USER],
        tools=[WEATHER_TOOL],
        tool_choice="required",
    )
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "0",
            "type": "function",
            "function": {"name": "get_temperature", "arguments": '{"location":"Brooklyn","units":"celsius"}'},
        }
    ]


async def test_streamed_tool_calls_keep_one_index(gateway):
    r = await chat(
        gateway, model="tensorzero::model_name::dummy::tool", messages=[USER], tools=[WEATHER_TOOL], stream=True
    )
    deltas = [c["choices"][0]["delta"] for c in sse(r.text)]
    calls = [call for d in deltas for call in d.get("tool_calls", [])]
    assert {c["index"] for c in calls} == {0}
    assert "".join(c["function"]["arguments"] for c in calls) == '{"location":"Brooklyn","units":"celsius"}'
    assert "".join(c["function"]["name"] for c in calls) == "get_temperature"


async def test_tool_messages_become_tool_results(gateway):
    messages = [
        USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_temperature", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "22 degrees"},
    ]
    r = await chat(gateway, model="tensorzero::model_name::dummy::echo_request_messages", messages=messages)
    echoed = orjson.loads(r.json()["choices"][0]["message"]["content"])["messages"]
    assert echoed[1]["content"][0] == {"type": "tool_call", "id": "c1", "name": "get_temperature", "arguments": "{}"}
    assert echoed[2] == {
        "role": "user",
        "content": [{"type": "tool_result", "id": "c1", "name": "get_temperature", "result": "22 degrees"}],
    }


async def test_images_by_data_url_reach_the_model(gateway):
    pixel = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{pixel}"}},
            ],
        }
    ]
    r = await chat(gateway, model="tensorzero::model_name::dummy::echo_request_messages", messages=messages)
    echoed = orjson.loads(r.json()["choices"][0]["message"]["content"])["messages"]
    assert echoed[0]["content"][1] == {"type": "file", "file_type": "base64", "data": pixel, "mime_type": "image/png"}


BAD = [
    pytest.param({"model": "gpt-4o", "messages": [USER]}, 400, "`model` field must start with", id="plain-model"),
    pytest.param({"model": "tensorzero::function_name::", "messages": [USER]}, 400, "empty name", id="empty-name"),
    pytest.param(
        {"model": "tensorzero::function_name::nope", "messages": [USER]},
        404,
        "Unknown function: nope",
        id="unknown-function",
    ),
    pytest.param(
        {"model": "tensorzero::model_name::dummy::good", "messages": [USER], "n": 2},
        400,
        "`n` must be 1",
        id="n-above-one",
    ),
    pytest.param({"model": "tensorzero::model_name::dummy::good", "messages": []}, 400, "messages", id="no-messages"),
    pytest.param(
        {
            "model": "tensorzero::model_name::dummy::good",
            "messages": [USER, {"role": "tool", "tool_call_id": "zz", "content": "x"}],
        },
        400,
        "answers tool call `zz`",
        id="tool-result-unknown-call",
    ),
    pytest.param(
        {
            "model": "tensorzero::model_name::dummy::good",
            "messages": [USER],
            "frobnicate": 1,
            "tensorzero::deny_unknown_fields": True,
        },
        400,
        "unknown fields: ['frobnicate']",
        id="deny-unknown",
    ),
    pytest.param(
        {
            "model": "tensorzero::model_name::dummy::good",
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]}
            ],
        },
        400,
        "invalid base64",
        id="bad-image-data",
    ),
    pytest.param(
        {"model": "tensorzero::model_name::dummy::good", "messages": [{"role": "narrator", "content": "x"}]},
        400,
        "unknown role `narrator`",
        id="unknown-role",
    ),
    pytest.param(
        {"model": "tensorzero::model_name::dummy::good", "messages": [USER], "tensorzero::episode": "x"},
        400,
        "unknown TensorZero fields: ['tensorzero::episode']",
        id="unknown-tensorzero-field",
    ),
]


@pytest.mark.parametrize("body, status, fragment", BAD)
async def test_bad_requests_get_openai_shaped_errors(gateway, body, status, fragment):
    r = await gateway.post("/openai/v1/chat/completions", json=body)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]["message"]


async def test_unknown_fields_are_ignored_by_default(gateway):
    r = await chat(gateway, model="tensorzero::model_name::dummy::good", messages=[USER], logit_bias={"1": 2})
    assert r.status_code == 200


async def test_embeddings_from_configured_and_shorthand_models(gateway, openai_mock):
    r = await gateway.post(
        "/openai/v1/embeddings",
        json={"model": "tensorzero::embedding_model_name::embedder", "input": ["hi", "hello"], "dimensions": 2},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [d["embedding"] for d in body["data"]] == [[2.0, 2.0], [5.0, 5.0]]
    assert body["usage"]["prompt_tokens"] == 10
    assert openai_mock.last()["body"]["model"] == "text-embedding-3-small"
    r = await gateway.post(
        "/openai/v1/embeddings", json={"model": "tensorzero::embedding_model_name::dummy::e", "input": "hi"}
    )
    assert len(r.json()["data"][0]["embedding"]) == 1536
    r = await gateway.post(
        "/openai/v1/embeddings", json={"model": "tensorzero::embedding_model_name::nope", "input": "hi"}
    )
    assert r.status_code == 404 and "Unknown model: nope" in r.json()["error"]["message"]


SQL_TOOL = {
    "type": "custom",
    "custom": {
        "name": "run_sql",
        "description": "Run one SQL query",
        "format": {"type": "grammar", "grammar": {"syntax": "regex", "definition": "SELECT .*"}},
    },
}


async def test_custom_tools_reach_openai_and_come_back_in_their_shape(gateway, openai_mock):
    r = await chat(gateway, model="tensorzero::model_name::gpt_tools", messages=[USER], tools=[SQL_TOOL])
    assert r.status_code == 200, r.text
    assert openai_mock.last()["body"]["tools"] == [SQL_TOOL]
    message = r.json()["choices"][0]["message"]
    assert message["tool_calls"] == [
        {"id": "call_c", "type": "custom", "custom": {"name": "run_sql", "input": "SELECT 1"}}
    ]
    streamed = await chat(
        gateway, model="tensorzero::model_name::gpt_tools", messages=[USER], tools=[SQL_TOOL], stream=True
    )
    calls = [c for chunk in sse(streamed.text) for c in chunk["choices"][0]["delta"].get("tool_calls", [])]
    assert {c["type"] for c in calls} == {"custom"}
    assert "".join(c["custom"]["input"] for c in calls) == "SELECT 1"
    assert calls[0]["custom"]["name"] == "run_sql"


async def test_custom_tool_calls_go_back_to_openai_as_custom_calls(gateway, openai_mock):
    history = [
        USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_c", "type": "custom", "custom": {"name": "run_sql", "input": "SELECT 1"}}],
        },
        {"role": "tool", "tool_call_id": "call_c", "content": "1"},
    ]
    r = await chat(
        gateway,
        model="tensorzero::model_name::gpt",
        messages=history,
        tools=[SQL_TOOL],
        tool_choice={"type": "custom", "custom": {"name": "run_sql"}},
    )
    assert r.status_code == 200, r.text
    sent = openai_mock.last()["body"]
    assert sent["messages"][1]["tool_calls"] == [
        {"id": "call_c", "type": "custom", "custom": {"name": "run_sql", "input": "SELECT 1"}}
    ]
    assert sent["tool_choice"] == {"type": "custom", "custom": {"name": "run_sql"}}


async def test_custom_tools_are_refused_by_providers_without_them(gateway):
    r = await chat(gateway, model="tensorzero::model_name::dummy::good", messages=[USER], tools=[SQL_TOOL])
    assert r.status_code == 400
    assert "does not support OpenAI custom tools" in r.json()["error"]["message"]


ANSWER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


async def test_chat_functions_answer_through_the_respond_tool_with_an_output_schema(gateway, openai_mock):
    r = await chat(
        gateway,
        model="tensorzero::model_name::gpt_tools",
        messages=[USER],
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA}},
        **{"tensorzero::params": {"chat_completion": {"json_mode": "tool"}}},
    )
    assert r.status_code == 200, r.text
    sent = openai_mock.last()["body"]
    assert [t["function"]["name"] for t in sent["tools"]] == ["respond"]
    assert sent["tools"][0]["function"]["parameters"] == ANSWER_SCHEMA
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "respond"}}
    choice = r.json()["choices"][0]
    assert choice["message"]["content"] == '{"city":"Tokyo"}' and "tool_calls" not in choice["message"]
    native = await gateway.post(
        "/inference",
        json={
            "model_name": "gpt_tools",
            "input": {"messages": [USER]},
            "output_schema": ANSWER_SCHEMA,
            "params": {"chat_completion": {"json_mode": "tool"}},
            "stream": True,
        },
    )
    chunks = sse(native.text)
    assert "".join(p["text"] for c in chunks for p in c.get("content", []) if p["type"] == "text") == (
        '{"city":"Tokyo"}'
    )


async def test_chat_functions_send_their_output_schema_in_strict_mode(gateway, openai_mock):
    r = await chat(
        gateway,
        model="tensorzero::model_name::gpt",
        messages=[USER],
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA}},
    )
    assert r.status_code == 200, r.text
    assert openai_mock.last()["body"]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "strict": True, "schema": ANSWER_SCHEMA},
    }
