"""POST /feedback: every metric kind and level lands in its table; every bad request is a 4xx
that names the problem and stores nothing."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from tensorzero_ray.ids import uuid7

SYSTEM = {"assistant_name": "Alfred"}
HELLO = {"system": SYSTEM, "messages": [{"role": "user", "content": "Hello"}]}
PLAIN = {"messages": [{"role": "user", "content": "Hello"}]}
OLD_ID = str(uuid7(int(time.time() * 1000) - 60_000))


@pytest.fixture(scope="module")
async def chat_inference(gateway) -> dict:
    return (await gateway.post("/inference", json={"function_name": "basic_test", "input": HELLO})).json()


@pytest.fixture(scope="module")
async def json_inference(gateway) -> dict:
    input_ = {"messages": [{"role": "user", "content": {"country": "Japan"}}]}
    return (await gateway.post("/inference", json={"function_name": "json_success", "input": input_})).json()


@pytest.fixture(scope="module")
async def tool_inference(gateway) -> dict:
    return (await gateway.post("/inference", json={"function_name": "weather_helper", "input": PLAIN})).json()


async def feedback(gateway, **body):
    return await gateway.post("/feedback", json=body)


async def rows(observability, table: str, feedback_id: str) -> list[dict]:
    await observability.flush()
    return await observability.query(f"SELECT * FROM {table} WHERE id = {{id:UUID}}", {"id": uuid.UUID(feedback_id)})


async def test_boolean_inference_feedback_sent_right_after_the_inference(gateway, observability):
    # No flush in between: the gateway waits for the fresh inference to become visible.
    inference = (await gateway.post("/inference", json={"function_name": "basic_test", "input": HELLO})).json()
    r = await feedback(
        gateway, metric_name="thumbs_up", value=True, inference_id=inference["inference_id"], tags={"reviewer": "ann"}
    )
    assert r.status_code == 200, r.text
    stored = await rows(observability, "BooleanMetricFeedback", r.json()["feedback_id"])
    assert stored[0]["target_id"] == inference["inference_id"]
    assert stored[0]["value"] is True and stored[0]["tags"] == {"reviewer": "ann"}
    by_target = await observability.query(
        "SELECT metric_name FROM BooleanMetricFeedbackByTargetId WHERE target_id = {t:UUID}",
        {"t": uuid.UUID(inference["inference_id"])},
    )
    assert by_target == [{"metric_name": "thumbs_up"}]


async def test_float_episode_feedback(gateway, observability, chat_inference):
    r = await feedback(gateway, metric_name="quality", value=0.75, episode_id=chat_inference["episode_id"])
    assert r.status_code == 200, r.text
    stored = await rows(observability, "FloatMetricFeedback", r.json()["feedback_id"])
    assert stored[0]["value"] == 0.75 and stored[0]["target_id"] == chat_inference["episode_id"]


async def test_comments_on_inference_and_episode(gateway, observability, chat_inference):
    for target_type, key in (("inference", "inference_id"), ("episode", "episode_id")):
        r = await feedback(gateway, metric_name="comment", value="nice", **{key: chat_inference[key]})
        assert r.status_code == 200, r.text
        stored = await rows(observability, "CommentFeedback", r.json()["feedback_id"])
        assert (stored[0]["target_type"], stored[0]["value"]) == (target_type, "nice")


async def test_chat_demonstrations(gateway, observability, chat_inference, tool_inference):
    r = await feedback(
        gateway, metric_name="demonstration", value="A better answer", inference_id=chat_inference["inference_id"]
    )
    assert r.status_code == 200, r.text
    stored = await rows(observability, "DemonstrationFeedback", r.json()["feedback_id"])
    assert orjson.loads(stored[0]["value"]) == [{"type": "text", "text": "A better answer"}]
    call = {"type": "tool_call", "id": "1", "name": "get_temperature", "arguments": {"location": "Oslo"}}
    r = await feedback(gateway, metric_name="demonstration", value=[call], inference_id=tool_inference["inference_id"])
    assert r.status_code == 200, r.text
    stored = await rows(observability, "DemonstrationFeedback", r.json()["feedback_id"])
    assert orjson.loads(stored[0]["value"])[0]["arguments"] == {"location": "Oslo"}


async def test_json_demonstration(gateway, observability, json_inference):
    r = await feedback(
        gateway, metric_name="demonstration", value={"answer": "Tokyo"}, inference_id=json_inference["inference_id"]
    )
    assert r.status_code == 200, r.text
    stored = await rows(observability, "DemonstrationFeedback", r.json()["feedback_id"])
    assert orjson.loads(stored[0]["value"]) == {"raw": '{"answer":"Tokyo"}', "parsed": {"answer": "Tokyo"}}


async def test_dryrun_validates_but_stores_nothing(gateway, observability, chat_inference):
    r = await feedback(
        gateway, metric_name="thumbs_up", value=False, inference_id=chat_inference["inference_id"], dryrun=True
    )
    assert r.status_code == 200
    assert await rows(observability, "BooleanMetricFeedback", r.json()["feedback_id"]) == []


BAD = [
    pytest.param({"metric_name": "nope", "value": True}, "inference", 404, "Unknown metric: nope", id="unknown-metric"),
    pytest.param({"metric_name": "thumbs_up", "value": 1}, "inference", 400, "must be a boolean", id="bool-wrong-type"),
    pytest.param(
        {"metric_name": "quality", "value": "high"}, "episode", 400, "must be a number", id="float-wrong-type"
    ),
    pytest.param({"metric_name": "quality", "value": True}, "episode", 400, "must be a number", id="float-given-bool"),
    pytest.param({"metric_name": "comment", "value": 3}, "inference", 400, "must be a string", id="comment-not-string"),
    pytest.param(
        {"metric_name": "thumbs_up", "value": True},
        "episode",
        400,
        'Correct ID was not provided for feedback level "inference".',
        id="wrong-level",
    ),
    pytest.param(
        {"metric_name": "quality", "value": 1.0},
        "inference",
        400,
        'Correct ID was not provided for feedback level "episode".',
        id="wrong-level-episode",
    ),
    pytest.param(
        {"metric_name": "thumbs_up", "value": True},
        "both",
        400,
        "Both episode_id and inference_id cannot be provided",
        id="both-ids",
    ),
    pytest.param({"metric_name": "thumbs_up", "value": True}, "none", 400, "Exactly one of", id="no-id"),
    pytest.param(
        {"metric_name": "thumbs_up", "value": True, "inference_id": OLD_ID},
        None,
        400,
        f"Inference ID: {OLD_ID} does not exist",
        id="target-never-existed",
    ),
    pytest.param(
        {"metric_name": "thumbs_up", "value": True, "inference_id": "nope"},
        None,
        400,
        "Invalid Inference ID",
        id="malformed-id",
    ),
    pytest.param(
        {"metric_name": "thumbs_up", "value": True, "tags": {"tensorzero::x": "y"}},
        "inference",
        400,
        "Tag name cannot start with 'tensorzero::'",
        id="reserved-tag",
    ),
    pytest.param(
        {"metric_name": "thumbs_up", "value": True, "extra": 1},
        "inference",
        400,
        "`extra`: unknown key",
        id="unknown-field",
    ),
    pytest.param({"metric_name": "thumbs_up"}, "inference", 400, "`value`: missing required key", id="missing-value"),
    pytest.param(
        {"metric_name": "demonstration", "value": [{"type": "image"}]},
        "inference",
        400,
        "Demonstration block 0 must be a text or tool_call block",
        id="bad-demo-block",
    ),
    pytest.param(
        {"metric_name": "demonstration", "value": [{"type": "tool_call", "name": "launch", "arguments": {}}]},
        "inference",
        400,
        "does not match a tool",
        id="demo-unknown-tool",
    ),
]


@pytest.mark.parametrize("body, target, status, fragment", BAD)
async def test_bad_feedback_is_rejected_and_stores_nothing(
    gateway, observability, chat_inference, body, target, status, fragment
):
    body = dict(body, tags={**body.get("tags", {}), "case": uuid.uuid4().hex})
    if target in ("inference", "both"):
        body["inference_id"] = chat_inference["inference_id"]
    if target in ("episode", "both"):
        body["episode_id"] = chat_inference["episode_id"]
    r = await feedback(gateway, **body)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]
    await observability.flush()
    for table in ("BooleanMetricFeedback", "FloatMetricFeedback", "CommentFeedback", "DemonstrationFeedback"):
        found = await observability.query(
            f"SELECT count() AS n FROM {table} WHERE tags['case'] = {{c:String}}", {"c": body["tags"]["case"]}
        )
        assert found == [{"n": 0}]


async def test_json_demonstration_must_match_the_output_schema(gateway, json_inference):
    r = await feedback(
        gateway, metric_name="demonstration", value={"wrong": 1}, inference_id=json_inference["inference_id"]
    )
    assert r.status_code == 400
    assert "'answer' is a required property" in r.json()["error"]
