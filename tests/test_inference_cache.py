"""The inference cache against the mock OpenAI server (which records every call): a hit skips
the provider, costs nothing and is marked cached in the stored model inference; `max_age_s`
limits reads; read-only and write-only modes; dry runs read but do not write; a stream is
replayed from a cached answer; a cache that cannot be read is a miss, not an error."""

from __future__ import annotations

import uuid

import httpx
import orjson

from tensorzero_ray.api.gateway import create_app
from tensorzero_ray.functions.routers import LocalRouters
from tensorzero_ray.inference.cache import InferenceCache
from tensorzero_ray.store.observability import ObservabilityClient, ObservabilityWriter, StorageSettings
from tensorzero_ray.types.inference import CacheOptions
from tensorzero_ray.types.model import ModelInferenceRequest, RequestMessage
from tests.mocks.openai_server import TEXT


def body(text: str, mode: str, **extra) -> dict:
    return {
        "function_name": "openai_chat",
        "input": {"messages": [{"role": "user", "content": text}]},
        "cache_options": {"enabled": mode, **extra.pop("cache", {})},
        **extra,
    }


def calls(openai_mock, text: str) -> int:
    return sum(1 for r in openai_mock.requests if text in orjson.dumps(r["body"]).decode())


async def cached_flags(observability, inference_id: str) -> list[bool]:
    await observability.flush()
    rows = await observability.query(
        "SELECT cached FROM ModelInference WHERE inference_id = {i:UUID}", {"i": inference_id}
    )
    return [bool(r["cached"]) for r in rows]


async def test_a_hit_skips_the_provider_costs_nothing_and_is_marked_cached(gateway, openai_mock, observability):
    text = f"cache me {uuid.uuid4()}"
    first = (await gateway.post("/inference", json=body(text, "on"))).json()
    await observability.flush()  # the entry is written like any row
    second = await gateway.post("/inference", json=body(text, "on"))
    assert second.status_code == 200, second.text
    assert calls(openai_mock, text) == 1
    assert second.json()["content"] == first["content"] == [{"type": "text", "text": TEXT}]
    assert second.json()["usage"]["input_tokens"] == 0 and second.json()["usage"]["output_tokens"] == 0
    assert await cached_flags(observability, first["inference_id"]) == [False]
    assert await cached_flags(observability, second.json()["inference_id"]) == [True]


async def test_max_age_limits_what_is_read(gateway, openai_mock, observability, config):
    text = f"aging {uuid.uuid4()}"
    assert (await gateway.post("/inference", json=body(text, "on"))).status_code == 200
    await observability.flush()
    # The entry, an hour older.
    await observability.query(
        "INSERT INTO ModelInferenceCache (short_cache_key, long_cache_key, timestamp, output, raw_request, raw_response) "
        "SELECT short_cache_key, long_cache_key, now() - 3600, output, raw_request, raw_response "
        "FROM ModelInferenceCache WHERE position(raw_request, {t:String}) > 0",
        {"t": text},
    )
    await observability.query(
        "ALTER TABLE ModelInferenceCache DELETE WHERE position(raw_request, {t:String}) > 0 "
        "AND timestamp > now() - 600 SETTINGS mutations_sync = 1",
        {"t": text},
    )
    # Another replica: it knows the entry only from ClickHouse.
    routers = LocalRouters(config, observability)
    transport = httpx.ASGITransport(app=create_app(config, routers, observability))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as replica:
        assert (
            await replica.post("/inference", json=body(text, "read_only", cache={"max_age_s": 60}))
        ).status_code == 200
        assert calls(openai_mock, text) == 2  # an hour old is too old
        assert (await replica.post("/inference", json=body(text, "read_only"))).status_code == 200
        assert calls(openai_mock, text) == 2  # without a limit, any entry will do
    await routers.aclose()


async def test_modes_and_dry_runs(gateway, openai_mock, observability):
    text = f"modes {uuid.uuid4()}"
    await gateway.post("/inference", json=body(text, "read_only"))
    await gateway.post("/inference", json=body(text, "on", dryrun=True))
    await observability.flush()
    await gateway.post("/inference", json=body(text, "read_only"))
    assert calls(openai_mock, text) == 3  # read-only and dry runs wrote nothing
    await gateway.post("/inference", json=body(text, "write_only"))
    await observability.flush()
    await gateway.post("/inference", json=body(text, "write_only"))
    assert calls(openai_mock, text) == 5  # write-only never reads
    answer = await gateway.post("/inference", json=body(text, "on", dryrun=True))
    assert calls(openai_mock, text) == 5 and answer.json()["content"][0]["text"] == TEXT  # dry runs read


async def test_a_stream_is_replayed_from_the_cache(gateway, openai_mock, observability):
    text = f"stream me {uuid.uuid4()}"
    await gateway.post("/inference", json=body(text, "on"))
    await observability.flush()
    response = await gateway.post("/inference", json=body(text, "on", stream=True))
    assert response.status_code == 200 and calls(openai_mock, text) == 1
    events = [orjson.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    assert "".join(b["text"] for e in events for b in e.get("content", []) if b["type"] == "text") == TEXT
    assert await cached_flags(observability, events[0]["inference_id"]) == [True]


async def test_a_cache_that_cannot_be_read_is_a_miss(tmp_path):
    down = ObservabilityWriter(
        StorageSettings(
            dsn="http://127.0.0.1:9/default", spool_path=str(tmp_path / "spool" / "w.jsonl"), required=False
        )
    )
    cache = InferenceCache(ObservabilityClient(down.settings, down), CacheOptions(enabled="on"), dryrun=False)
    request = ModelInferenceRequest(function_type="chat", messages=[RequestMessage(role="user", content=[])])
    assert await cache.lookup("gpt", "openai", request) is None
    down.store.close()
