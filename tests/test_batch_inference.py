"""Batch inference over OpenAI's batch and files API (the mock speaks both and advances a
batch one state per poll), and over the dummy provider as TensorZero has it: start, poll
until done, the inferences stored once, the provider's errors reported."""

from __future__ import annotations

import uuid

import orjson
import pytest

from tensorzero_ray.client import AsyncTensorZeroRayClient
from tensorzero_ray.ids import uuid7
from tests.mocks.openai_server import TEXT


def message(text: str) -> dict:
    return {"messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]}


async def poll(gateway, batch_id: str, inference_id: str | None = None) -> dict:
    path = f"/batch_inference/{batch_id}" + (f"/inference/{inference_id}" if inference_id else "")
    response = await gateway.get(path)
    assert response.status_code == 200, response.text
    return response.json()


async def poll_until_done(gateway, batch_id: str) -> dict:
    seen = []
    for _ in range(5):
        body = await poll(gateway, batch_id)
        seen.append(body["status"])
        if body["status"] != "pending":
            return body
    raise AssertionError(f"still pending after {seen}")


async def test_a_batch_goes_up_as_one_file_and_comes_back_as_stored_inferences(gateway, openai_mock, observability):
    texts = [f"batch {i} {uuid.uuid4()}" for i in range(3)]
    episode = str(uuid7())
    started = await gateway.post(
        "/batch_inference",
        json={
            "function_name": "openai_chat",
            "inputs": [message(t) for t in texts],
            "episode_ids": [episode, None, None],
            "params": {"chat_completion": {"temperature": [0.1, None, 0.9]}},
            "tags": [{"row": "0"}, None, {"row": "2"}],
        },
    )
    assert started.status_code == 200, started.text
    ids = started.json()
    assert len(ids["inference_ids"]) == len(ids["episode_ids"]) == 3
    assert ids["episode_ids"][0] == episode

    upload = next(u for u in openai_mock.uploads.values() if texts[0] in orjson.dumps(u["rows"]).decode())
    assert upload["purpose"] == "batch"
    assert [row["custom_id"] for row in upload["rows"]] == ids["inference_ids"]
    assert [row["body"].get("temperature") for row in upload["rows"]] == [0.1, None, 0.9]
    assert all(row["url"] == "/v1/chat/completions" for row in upload["rows"])

    assert (await poll(gateway, ids["batch_id"])) == {"status": "pending"}
    done = await poll_until_done(gateway, ids["batch_id"])
    assert done["status"] == "completed" and done["batch_id"] == ids["batch_id"]
    assert [i["inference_id"] for i in done["inferences"]] == ids["inference_ids"]
    assert [i["episode_id"] for i in done["inferences"]][0] == episode
    first = done["inferences"][0]
    assert first["content"] == [{"type": "text", "text": TEXT}]
    assert first["usage"] == {"input_tokens": 12, "output_tokens": 7} and first["finish_reason"] == "stop"
    assert first["variant_name"] == "gpt"

    one = await poll(gateway, ids["batch_id"], ids["inference_ids"][1])
    assert [i["inference_id"] for i in one["inferences"]] == [ids["inference_ids"][1]]

    # Later polls read the stored rows: the inferences are written once.
    assert (await poll(gateway, ids["batch_id"]))["inferences"] == done["inferences"]
    rows = await observability.query(
        "SELECT id, tags, input FROM ChatInference WHERE id IN {ids:Array(UUID)}", {"ids": ids["inference_ids"]}
    )
    by_id = {str(row["id"]): row for row in rows}
    assert len(rows) == 3
    assert (
        by_id[ids["inference_ids"][0]]["tags"] == {"row": "0"} and texts[2] in by_id[ids["inference_ids"][2]]["input"]
    )
    models = await observability.query(
        "SELECT raw_request, input_tokens FROM ModelInference WHERE inference_id IN {ids:Array(UUID)}",
        {"ids": ids["inference_ids"]},
    )
    assert len(models) == 3 and all(texts[0] in m["raw_request"] or m["input_tokens"] == 12 for m in models)
    states = await observability.query(
        "SELECT status FROM BatchRequest WHERE batch_id = {b:UUID}", {"b": ids["batch_id"]}
    )
    assert sorted(s["status"] for s in states) == ["completed", "pending", "pending"]


async def test_the_python_client_starts_and_polls_a_batch(gateway):
    async with AsyncTensorZeroRayClient(str(gateway.base_url), transport=gateway._transport) as client:
        started = await client.start_batch_inference(function_name="openai_chat", inputs=[message("client")])
        statuses = [(await client.poll_batch_inference(started.batch_id)).status for _ in range(3)]
        assert statuses == ["pending", "completed", "completed"]
        done = await client.poll_batch_inference(started.batch_id, started.inference_ids[0])
    assert [i.inference_id for i in done.inferences] == started.inference_ids
    assert done.inferences[0].content[0].text == TEXT


async def test_a_json_function_batch_parses_each_answer_against_the_schema(gateway):
    started = (
        await gateway.post(
            "/batch_inference", json={"function_name": "batch_json", "inputs": [message("q1"), message("q2")]}
        )
    ).json()
    done = await poll_until_done(gateway, started["batch_id"])
    assert [i["output"] for i in done["inferences"]] == [{"raw": '{"answer":"42"}', "parsed": {"answer": "42"}}] * 2


async def test_a_failed_provider_batch_reports_the_providers_error(gateway):
    started = (
        await gateway.post("/batch_inference", json={"function_name": "batch_fail", "inputs": [message("x")]})
    ).json()
    done = await poll_until_done(gateway, started["batch_id"])
    assert done == {"status": "failed", "errors": ["no such model"]}


async def test_an_element_the_provider_refused_is_left_out_and_named(gateway, observability):
    started = (
        await gateway.post(
            "/batch_inference",
            json={"function_name": "openai_chat", "inputs": [message("fine"), message("please fail"), message("fine")]},
        )
    ).json()
    done = await poll_until_done(gateway, started["batch_id"])
    refused = started["inference_ids"][1]
    assert [i["inference_id"] for i in done["inferences"]] == [started["inference_ids"][0], started["inference_ids"][2]]
    missing = await gateway.get(f"/batch_inference/{started['batch_id']}/inference/{refused}")
    assert missing.status_code == 404
    [latest] = await observability.query(
        "SELECT errors FROM BatchRequest WHERE batch_id = {b:UUID} AND status = 'completed'", {"b": started["batch_id"]}
    )
    assert (
        len(latest["errors"]) == 1 and refused in latest["errors"][0] and "This line was refused" in latest["errors"][0]
    )


async def test_the_dummy_provider_starts_a_batch_that_cannot_be_polled(gateway):
    started = await gateway.post(
        "/batch_inference",
        json={
            "function_name": "basic_test",
            "variant_name": "test",
            "inputs": [{"system": {"assistant_name": "Dr. Mehta"}, "messages": [{"role": "user", "content": "hi"}]}]
            * 2,
        },
    )
    assert started.status_code == 200, started.text
    polled = await gateway.get(f"/batch_inference/{started.json()['batch_id']}")
    assert polled.status_code == 400
    assert "cannot poll batches" in polled.json()["error"]


@pytest.mark.parametrize(
    "body, status, names",
    [
        ({"function_name": "openai_chat", "inputs": []}, 400, "inputs"),
        ({"function_name": "openai_chat", "inputs": [message("a")], "episode_ids": [None, None]}, 400, "episode_ids"),
        (
            {"function_name": "openai_chat", "inputs": [message("a")], "params": {"chat_completion": {"seed": [1, 2]}}},
            400,
            "params.chat_completion.seed",
        ),
        ({"function_name": "openai_chat", "inputs": [message("a"), {"messages": "no"}]}, 400, "inputs[1]"),
        ({"function_name": "openai_chat", "inputs": [message("a")], "stream": True}, 400, "stream"),
        ({"function_name": "nope", "inputs": [message("a")]}, 404, "nope"),
        ({"function_name": "json_success", "inputs": [message("a")]}, 400, "inputs[0]"),
    ],
)
async def test_bad_batches_are_refused_naming_the_problem(gateway, body, status, names):
    response = await gateway.post("/batch_inference", json=body)
    assert response.status_code == status, response.text
    assert names in response.json()["error"]


async def test_unknown_and_malformed_batch_ids(gateway):
    unknown = await gateway.get(f"/batch_inference/{uuid.uuid4()}")
    assert unknown.status_code == 404 and "not found" in unknown.json()["error"]
    malformed = await gateway.get("/batch_inference/not-a-uuid")
    assert malformed.status_code == 400 and "batch_id" in malformed.json()["error"]
