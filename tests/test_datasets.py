"""Datasets and datapoints (spec §1.6): create, read back, update into new versions, rename,
delete softly, build from stored inferences; unknown names are 404, bad datapoints 400."""

from __future__ import annotations

import uuid

import pytest

from tensorzero_ray.client import AsyncTensorZeroRayClient, GatewayError

SYSTEM = {"assistant_name": "Alfred"}
CHAT = {
    "type": "chat",
    "function_name": "basic_test",
    "input": {"system": SYSTEM, "messages": [{"role": "user", "content": "Hi"}]},
    "output": [{"type": "text", "text": "Hello there"}],
    "tags": {"source": "hand"},
    "name": "greeting",
}
JSON = {
    "type": "json",
    "function_name": "json_success",
    "input": {"messages": [{"role": "user", "content": {"country": "Peru"}}]},
    "output": {"raw": '{"answer": "Lima"}'},
}
TOOL = {
    "type": "chat",
    "function_name": "weather_helper",
    "input": {"messages": [{"role": "user", "content": "Weather in Oslo?"}]},
    "output": [{"type": "tool_call", "id": "c1", "name": "get_temperature", "arguments": {"location": "Oslo"}}],
}


def name() -> str:
    return f"ds_{uuid.uuid4().hex[:10]}"


async def ok(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


async def create(gateway, dataset: str, *datapoints: dict) -> list[str]:
    return (await ok(await gateway.post(f"/v1/datasets/{dataset}/datapoints", json={"datapoints": list(datapoints)})))[
        "ids"
    ]


async def listed(gateway, dataset: str, **body) -> list[dict]:
    return (await ok(await gateway.post(f"/v1/datasets/{dataset}/list_datapoints", json=body)))["datapoints"]


async def test_create_and_read_back_chat_json_and_tool_datapoints(gateway):
    dataset = name()
    chat_id, json_id, tool_id = await create(gateway, dataset, CHAT, JSON, TOOL)
    points = {p["id"]: p for p in await listed(gateway, dataset)}
    assert set(points) == {chat_id, json_id, tool_id}
    chat = points[chat_id]
    assert chat["type"] == "chat" and chat["dataset_name"] == dataset and chat["name"] == "greeting"
    assert chat["input"]["messages"][0]["content"] == [{"type": "text", "text": "Hi"}]
    assert chat["output"] == [{"type": "text", "text": "Hello there"}]
    assert chat["tags"] == {"source": "hand"} and chat["is_custom"] is True and chat["staled_at"] is None
    assert points[json_id]["output"] == {"raw": '{"answer": "Lima"}', "parsed": {"answer": "Lima"}}
    assert points[json_id]["output_schema"]["required"] == ["answer"]
    assert points[tool_id]["output"][0]["arguments"] == {"location": "Oslo"}
    only_json = await listed(gateway, dataset, function_name="json_success")
    assert [p["id"] for p in only_json] == [json_id]
    got = await ok(await gateway.post(f"/v1/datasets/{dataset}/get_datapoints", json={"ids": [tool_id, chat_id]}))
    assert [p["id"] for p in got["datapoints"]] == [tool_id, chat_id]


async def test_update_makes_a_new_version_and_stales_the_old(gateway):
    dataset = name()
    (old_id,) = await create(gateway, dataset, CHAT)
    change = {"id": old_id, "output": [{"type": "text", "text": "Better"}], "tags": {"edited": "yes"}}
    (new_id,) = (await ok(await gateway.patch(f"/v1/datasets/{dataset}/datapoints", json={"datapoints": [change]})))[
        "ids"
    ]
    assert new_id != old_id
    live = await listed(gateway, dataset)
    assert [p["id"] for p in live] == [new_id]
    assert live[0]["output"] == [{"type": "text", "text": "Better"}] and live[0]["tags"] == {"edited": "yes"}
    assert live[0]["input"] == (await listed(gateway, dataset))[0]["input"]
    both = await ok(await gateway.post("/v1/datasets/get_datapoints", json={"ids": [old_id, new_id]}))
    old, new = both["datapoints"]
    assert old["staled_at"] is not None and new["staled_at"] is None
    again = await gateway.patch(f"/v1/datasets/{dataset}/datapoints", json={"datapoints": [change]})
    assert again.status_code == 404 and old_id in again.json()["error"]


async def test_metadata_update_keeps_the_id(gateway):
    dataset = name()
    (dp_id,) = await create(gateway, dataset, CHAT)
    body = {"datapoints": [{"id": dp_id, "name": "renamed"}]}
    assert (await ok(await gateway.patch(f"/v1/datasets/{dataset}/datapoints/metadata", json=body)))["ids"] == [dp_id]
    (point,) = await listed(gateway, dataset)
    assert point["id"] == dp_id and point["name"] == "renamed" and point["output"] == CHAT["output"]


async def test_soft_delete_datapoints_and_datasets(gateway):
    dataset = name()
    first, second, third = await create(gateway, dataset, CHAT, JSON, TOOL)
    deleted = await ok(await gateway.request("DELETE", f"/v1/datasets/{dataset}/datapoints", json={"ids": [first]}))
    assert deleted == {"num_deleted_datapoints": 1}
    assert sorted(p["id"] for p in await listed(gateway, dataset)) == sorted([second, third])
    stale = await ok(await gateway.post(f"/v1/datasets/{dataset}/get_datapoints", json={"ids": [first]}))
    assert stale["datapoints"][0]["staled_at"] is not None
    assert (await ok(await gateway.delete(f"/v1/datasets/{dataset}"))) == {"num_deleted_datapoints": 2}
    assert await listed(gateway, dataset) == []
    summaries = (await ok(await gateway.get("/internal/datasets")))["datasets"]
    assert dataset not in [s["dataset_name"] for s in summaries]


async def test_pages_and_dataset_summaries(gateway):
    dataset = name()
    ids = await create(gateway, dataset, *[dict(CHAT, name=f"p{n}") for n in range(5)])
    pages = [await listed(gateway, dataset, limit=2, offset=offset) for offset in (0, 2, 4)]
    assert [p["id"] for page in pages for p in page] == list(reversed(ids))
    assert await listed(gateway, dataset, limit=2, offset=10) == []
    summaries = {s["dataset_name"]: s for s in (await ok(await gateway.get("/internal/datasets")))["datasets"]}
    assert summaries[dataset]["datapoint_count"] == 5 and summaries[dataset]["last_updated"].endswith("Z")
    tagged = await listed(gateway, dataset, filter={"type": "tag", "key": "source", "value": "hand"})
    assert len(tagged) == 5


@pytest.fixture(scope="module")
async def stored(gateway, observability) -> dict:
    suite = uuid.uuid4().hex
    ids = []
    for n in range(3):
        r = await gateway.post(
            "/inference",
            json={
                "function_name": "basic_test",
                "input": {"system": SYSTEM, "messages": [{"role": "user", "content": f"q{n}"}]},
                "tags": {"suite": suite},
            },
        )
        ids.append(r.json()["inference_id"])
    demo = {"metric_name": "demonstration", "inference_id": ids[0], "value": "Demonstrated"}
    assert (await gateway.post("/feedback", json=demo)).status_code == 200
    await observability.flush()
    return {"suite": suite, "ids": ids}


async def test_from_inference_ids_and_from_a_query(gateway, stored):
    dataset = name()
    body = {"type": "inference_ids", "inference_ids": stored["ids"][:2]}
    made = (await ok(await gateway.post(f"/v1/datasets/{dataset}/from_inferences", json=body)))["ids"]
    points = await listed(gateway, dataset)
    assert sorted(p["source_inference_id"] for p in points) == sorted(stored["ids"][:2])
    assert sorted(p["id"] for p in points) == sorted(made)
    assert all(p["is_custom"] is False and "Megumin" in p["output"][0]["text"] for p in points)

    demo_set = name()
    query = {
        "type": "inference_query",
        "function_name": "basic_test",
        "filters": {"type": "tag", "key": "suite", "value": stored["suite"]},
        "output_source": "demonstration",
    }
    await ok(await gateway.post(f"/v1/datasets/{demo_set}/from_inferences", json=query))
    (point,) = await listed(gateway, demo_set)
    assert point["source_inference_id"] == stored["ids"][0]
    assert point["output"] == [{"type": "text", "text": "Demonstrated"}]


async def test_the_python_client_covers_datasets(gateway, stored):
    async with AsyncTensorZeroRayClient(str(gateway.base_url), transport=gateway._transport) as client:
        dataset = name()
        ids = await client.create_datapoints(dataset, [CHAT])
        assert [p.id for p in await client.list_datapoints(dataset)] == ids
        from_query = await client.create_datapoints_from_inferences(
            dataset, function_name="basic_test", filters={"type": "tag", "key": "suite", "value": stored["suite"]}
        )
        assert len(from_query) == 3
        assert await client.delete_datapoints(dataset, ids) == 1
        assert {d.dataset_name: d.datapoint_count for d in await client.list_datasets()}[dataset] == 3
        with pytest.raises(GatewayError) as missing:
            await client.list_datapoints(name())
        assert missing.value.status_code == 404


UNKNOWN_ID = "0196c682-72e0-7c83-a92b-9d1a3c7630f2"


async def test_get_datapoints_with_unknown_ids_is_an_empty_list(gateway):
    for path in ("/v1/datasets/get_datapoints", "/v1/datasets/never_made/get_datapoints"):
        r = await gateway.post(path, json={"ids": [UNKNOWN_ID]})
        assert r.status_code == 200 and r.json() == {"datapoints": []}, r.text


@pytest.mark.parametrize(
    "method, path, body, status, fragment",
    [
        ("POST", "/v1/datasets/{new}/list_datapoints", {}, 404, "Unknown dataset"),
        ("DELETE", "/v1/datasets/{new}", None, 404, "Unknown dataset"),
        ("DELETE", "/v1/datasets/{new}/datapoints", {"ids": [UNKNOWN_ID]}, 404, "Datapoints not found"),
        (
            "POST",
            "/v1/datasets/{new}/datapoints",
            {"datapoints": [dict(JSON, output={"raw": '{"answer": 7}'})]},
            400,
            "does not match the output schema",
        ),
        (
            "POST",
            "/v1/datasets/{new}/datapoints",
            {"datapoints": [dict(JSON, output={"raw": "not json"})]},
            400,
            "not valid JSON",
        ),
        ("POST", "/v1/datasets/{new}/datapoints", {"datapoints": [dict(CHAT, type="json")]}, 400, "is a chat function"),
        (
            "POST",
            "/v1/datasets/{new}/datapoints",
            {"datapoints": [dict(CHAT, input={"messages": [{"role": "user", "content": "no system"}]})]},
            400,
            "system",
        ),
        (
            "POST",
            "/v1/datasets/{new}/datapoints",
            {"datapoints": [dict(TOOL, output=[{"type": "tool_call", "name": "launch", "arguments": {}}])]},
            400,
            "does not match a tool",
        ),
        ("POST", "/v1/datasets/{new}/datapoints", {"datapoints": [dict(CHAT, function_name="nope")]}, 404, "nope"),
        ("POST", "/v1/datasets/builder/datapoints", {"datapoints": [CHAT]}, 400, "Invalid dataset name"),
        (
            "POST",
            "/v1/datasets/{new}/from_inferences",
            {"type": "inference_ids", "inference_ids": [UNKNOWN_ID]},
            404,
            "Inferences not found",
        ),
        ("POST", "/v1/datasets/{new}/from_inferences", {"type": "sideways"}, 400, "inference_ids"),
        (
            "POST",
            "/v1/datasets/{new}/list_datapoints",
            {"filter": {"type": "boolean_metric", "metric_name": "thumbs_up", "value": True}},
            400,
            "not available",
        ),
    ],
)
async def test_bad_requests(gateway, method, path, body, status, fragment):
    dataset = name()
    r = await gateway.request(method, path.format(new=dataset), json=body)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]
    if method == "POST" and path.endswith("/datapoints") and status == 400:
        assert (await gateway.post(f"/v1/datasets/{dataset}/list_datapoints", json={})).status_code == 404


def test_datasets_through_the_serve_stack(serve_url):
    """On `tzray up`, datapoint writes go through the ObservabilityWriter deployment (the chDB
    owner) and are readable at once; the sync client covers the round trip."""
    from tensorzero_ray.client import TensorZeroRayClient

    point = {
        "type": "chat",
        "function_name": "chat",
        "input": {"system": {"assistant_name": "Ray"}, "messages": [{"role": "user", "content": "Hi"}]},
        "output": "Hello from a person",
    }
    dataset = name()
    with TensorZeroRayClient(serve_url) as client:
        (dp_id,) = client.create_datapoints(dataset, [point])
        (stored,) = client.list_datapoints(dataset)
        assert stored.id == dp_id and stored.output == [{"type": "text", "text": "Hello from a person"}]
        assert client.get_datapoints([dp_id])[0].function_name == "chat"
        assert client.delete_dataset(dataset) == 1
        assert client.list_datapoints(dataset) == []
