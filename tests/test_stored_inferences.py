"""The stored-inference API (spec §1.7): inferences and feedback seeded through the gateway
come back with each filter, ordering and page; bad filters are 4xx that name the problem."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

import pytest

SYSTEM = {"assistant_name": "Alfred"}


def chat_input(text: str) -> dict:
    return {"system": SYSTEM, "messages": [{"role": "user", "content": text}]}


async def infer(gateway, **body) -> dict:
    r = await gateway.post("/inference", json=body)
    assert r.status_code == 200, r.text
    return r.json()


async def feedback(gateway, **body) -> None:
    r = await gateway.post("/feedback", json=body)
    assert r.status_code == 200, r.text


async def listing(gateway, **body) -> list[dict]:
    r = await gateway.post("/v1/inferences/list_inferences", json=body)
    assert r.status_code == 200, r.text
    return r.json()["inferences"]


@pytest.fixture(scope="module")
async def seeded(gateway, observability) -> dict:
    """Eight chat inferences (the first four in one episode, two pinned to `echo`), two JSON
    inferences, and feedback of every kind, all tagged with this module's suite id."""
    suite = uuid.uuid4().hex
    tags = {"suite": suite}
    episode = None
    chat = []
    for n in range(8):
        body = {"function_name": "basic_test", "input": chat_input(f"question {n}"), "tags": {**tags, "n": str(n)}}
        if n < 4 and episode is not None:
            body["episode_id"] = episode
        if n in (5, 6):
            body["variant_name"] = "echo"
        response = await infer(gateway, **body)
        episode = episode or response["episode_id"]
        chat.append(response)
        if n == 3:
            middle = datetime.now(timezone.utc)
            while datetime.now(timezone.utc) < middle + timedelta(milliseconds=2):
                await asyncio.sleep(0.001)  # ids carry milliseconds: the next one must be later
    json_ = [
        await infer(
            gateway,
            function_name="json_success",
            input={"messages": [{"role": "user", "content": {"country": c}}]},
            tags=tags,
        )
        for c in ("Japan", "France")
    ]
    ids = [c["inference_id"] for c in chat]
    for index, value in ((0, True), (1, True), (2, False)):
        await feedback(gateway, metric_name="thumbs_up", inference_id=ids[index], value=value)
    await feedback(gateway, metric_name="thumbs_up", inference_id=ids[2], value=True)  # the latest wins
    for index, value in ((4, 0.9), (5, 0.1), (6, 0.5)):
        await feedback(gateway, metric_name="score", inference_id=ids[index], value=value)
    await feedback(gateway, metric_name="quality", episode_id=episode, value=0.8)
    await feedback(gateway, metric_name="demonstration", inference_id=ids[7], value="A demonstrated answer")
    await observability.flush()
    return {
        "suite": suite,
        "chat": ids,
        "json": [j["inference_id"] for j in json_],
        "episode": episode,
        "middle": middle,
    }


def suite_filter(seeded, *more) -> dict:
    tag = {"type": "tag", "key": "suite", "value": seeded["suite"]}
    return {"type": "and", "children": [tag, *more]} if more else tag


async def test_list_by_function_returns_stored_contents_newest_first(gateway, seeded):
    found = await listing(gateway, function_name="basic_test", filters=suite_filter(seeded), limit=100)
    assert [i["inference_id"] for i in found] == list(reversed(seeded["chat"]))
    last = found[0]
    assert last["type"] == "chat" and last["function_name"] == "basic_test"
    assert last["input"] == {
        "system": SYSTEM,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "question 7"}]}],
    }
    assert last["output"][0]["type"] == "text" and "Megumin" in last["output"][0]["text"]
    assert last["tags"] == {"suite": seeded["suite"], "n": "7"}
    assert last["timestamp"].endswith("Z") and last["processing_time_ms"] is not None
    assert last["dispreferred_outputs"] == []


async def test_list_without_function_spans_chat_and_json(gateway, seeded):
    found = await listing(gateway, filters=suite_filter(seeded), limit=100)
    assert sorted(i["inference_id"] for i in found) == sorted(seeded["chat"] + seeded["json"])
    json_rows = [i for i in found if i["type"] == "json"]
    assert {r["output"]["parsed"]["answer"] for r in json_rows} == {"Hello"}
    assert all(r["output_schema"]["required"] == ["answer"] for r in json_rows)


async def test_variant_and_episode_filters(gateway, seeded):
    echo = await listing(gateway, function_name="basic_test", variant_name="echo", filters=suite_filter(seeded))
    assert sorted(i["inference_id"] for i in echo) == sorted([seeded["chat"][5], seeded["chat"][6]])
    episode = await listing(gateway, episode_id=seeded["episode"])
    assert sorted(i["inference_id"] for i in episode) == sorted(seeded["chat"][:4])


@pytest.mark.parametrize(
    "metric_filter, expected",
    [
        ({"type": "boolean_metric", "metric_name": "thumbs_up", "value": True}, [0, 1, 2]),
        ({"type": "boolean_metric", "metric_name": "thumbs_up", "value": False}, []),
        ({"type": "float_metric", "metric_name": "score", "value": 0.5, "comparison_operator": ">="}, [4, 6]),
        ({"type": "float_metric", "metric_name": "score", "value": 0.5, "comparison_operator": "<"}, [5]),
        ({"type": "float_metric", "metric_name": "score", "value": 0.1, "comparison_operator": "!="}, [4, 6]),
        ({"type": "float_metric", "metric_name": "quality", "value": 0.7, "comparison_operator": ">"}, [0, 1, 2, 3]),
        ({"type": "demonstration_feedback", "has_demonstration": True}, [7]),
        ({"type": "tag", "key": "n", "value": "3", "comparison_operator": "="}, [3]),
        (
            {
                "type": "or",
                "children": [
                    {"type": "tag", "key": "n", "value": "0"},
                    {"type": "float_metric", "metric_name": "score", "value": 0.8, "comparison_operator": ">"},
                ],
            },
            [0, 4],
        ),
        (
            {"type": "not", "child": {"type": "tag", "key": "n", "value": "0", "comparison_operator": "!="}},
            [0],
        ),
    ],
    ids=[
        "bool-true",
        "bool-false-latest-wins",
        "float-ge",
        "float-lt",
        "float-ne",
        "episode-float",
        "demo",
        "tag",
        "or",
        "not",
    ],
)
async def test_filters(gateway, seeded, metric_filter, expected):
    found = await listing(gateway, function_name="basic_test", filters=suite_filter(seeded, metric_filter), limit=100)
    assert sorted(i["inference_id"] for i in found) == sorted(seeded["chat"][n] for n in expected)


async def test_time_filter(gateway, seeded):
    after = {"type": "time", "time": seeded["middle"].isoformat(), "comparison_operator": ">"}
    found = await listing(gateway, function_name="basic_test", filters=suite_filter(seeded, after), limit=100)
    assert sorted(i["inference_id"] for i in found) == sorted(seeded["chat"][4:])


async def test_ordering_by_timestamp_and_metric(gateway, seeded):
    oldest_first = await listing(
        gateway,
        function_name="basic_test",
        filters=suite_filter(seeded),
        order_by=[{"by": "timestamp", "direction": "ascending"}],
    )
    assert [i["inference_id"] for i in oldest_first] == seeded["chat"]
    by_score = await listing(
        gateway,
        function_name="basic_test",
        filters=suite_filter(
            seeded, {"type": "float_metric", "metric_name": "score", "value": 0, "comparison_operator": ">="}
        ),
        order_by=[{"by": "metric", "name": "score", "direction": "descending"}],
    )
    assert [i["inference_id"] for i in by_score] == [seeded["chat"][n] for n in (4, 6, 5)]


async def test_pages_offsets_and_cursors(gateway, seeded):
    base = {"function_name": "basic_test", "filters": suite_filter(seeded)}
    pages = [await listing(gateway, **base, limit=3, offset=offset) for offset in (0, 3, 6)]
    assert [i["inference_id"] for page in pages for i in page] == list(reversed(seeded["chat"]))
    assert await listing(gateway, **base, limit=3, offset=50) == []
    before = await listing(gateway, **base, limit=2, before=seeded["chat"][5])
    assert [i["inference_id"] for i in before] == [seeded["chat"][4], seeded["chat"][3]]
    after = await listing(gateway, **base, limit=2, after=seeded["chat"][5])
    assert [i["inference_id"] for i in after] == [seeded["chat"][7], seeded["chat"][6]]


async def test_demonstration_output_source(gateway, seeded):
    found = await listing(
        gateway, function_name="basic_test", filters=suite_filter(seeded), output_source="demonstration"
    )
    assert [i["inference_id"] for i in found] == [seeded["chat"][7]]
    assert found[0]["output"] == [{"type": "text", "text": "A demonstrated answer"}]
    assert "Megumin" in found[0]["dispreferred_outputs"][0][0]["text"]
    none = await listing(gateway, function_name="basic_test", filters=suite_filter(seeded), output_source="none")
    assert len(none) == 8 and all(i["output"] is None for i in none)


async def test_get_inferences_by_id(gateway, seeded):
    wanted = [seeded["chat"][1], seeded["json"][0], str(uuid.uuid4())]
    r = await gateway.post("/v1/inferences/get_inferences", json={"ids": wanted})
    assert r.status_code == 200, r.text
    assert sorted(i["inference_id"] for i in r.json()["inferences"]) == sorted(wanted[:2])


async def test_count_matches_the_list(gateway, seeded):
    body = {"function_name": "basic_test", "filters": suite_filter(seeded)}
    r = await gateway.post("/internal/inferences/count", json=body)
    assert r.json() == {"count": 8}


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        ({"filters": {"type": "boolean_metric", "metric_name": "nope", "value": True}}, 400, "Unknown metric"),
        ({"filters": {"type": "boolean_metric", "metric_name": "score", "value": True}}, 400, "is a float metric"),
        (
            {"filters": {"type": "float_metric", "metric_name": "thumbs_up", "value": 1, "comparison_operator": ">"}},
            400,
            "is a boolean metric",
        ),
        ({"order_by": [{"by": "metric", "name": "nope"}]}, 400, "Unknown metric"),
        ({"offset": 2, "before": "0196c682-72e0-7c83-a92b-9d1a3c7630f2"}, 400, "mutually exclusive"),
        ({"episode_id": "not-a-uuid"}, 400, "not a UUID"),
        ({"filters": {"type": "time", "time": "yesterday", "comparison_operator": ">"}}, 400, "RFC 3339"),
        ({"filters": {"type": "sideways"}}, 400, "filters"),
        ({"limit": -1}, 400, "limit"),
        ({"function_name": "no_such_function"}, 404, "Unknown function"),
    ],
)
async def test_bad_queries_are_4xx(gateway, body, status, fragment):
    r = await gateway.post("/v1/inferences/list_inferences", json=body)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]


async def test_a_read_by_id_waits_for_an_inference_still_on_its_way(gateway, observability):
    """Another Gateway replica may still be delivering an inference it acknowledged a moment
    ago; a read by its id waits for it instead of answering that it does not exist."""
    from tensorzero_ray.ids import uuid7
    from tensorzero_ray.store.rows import ChatInferenceRow

    row = ChatInferenceRow(
        id=uuid7(), function_name="basic_test", variant_name="test", episode_id=uuid7(),
        input='{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}',
        output='[{"type":"text","text":"hello"}]', inference_params="{}", tags={"arrives": "late"},
    )  # fmt: skip

    async def delivered_later() -> None:
        await asyncio.sleep(0.3)  # the other replica's delivery, simulated
        await observability.record([row])

    delivery = asyncio.create_task(delivered_later())
    found = await gateway.post("/v1/inferences/get_inferences", json={"ids": [str(row.id)]})
    await delivery
    assert [i["inference_id"] for i in found.json()["inferences"]] == [str(row.id)]
