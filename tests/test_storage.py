"""Every inference lands in ClickHouse (embedded chDB) with TensorZero's columns; migrations are
idempotent; a database outage loses nothing and duplicates nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from tensorzero_ray.store import BatchWriter, ClickHouseStore, Spool
from tensorzero_ray.store.dsn import redact, resolve_dsn
from tensorzero_ray.store.journal import Journal
from tensorzero_ray.store.migrations import MIGRATIONS

SYSTEM = {"assistant_name": "Alfred"}
HELLO = {"system": SYSTEM, "messages": [{"role": "user", "content": "Hello"}]}
PLAIN = {"messages": [{"role": "user", "content": "Hello"}]}


async def stored(observability, sql: str, **params) -> list[dict]:
    await observability.flush()
    return await observability.query(sql, params)


async def test_chat_inference_rows(gateway, observability):
    r = await gateway.post("/inference", json={"function_name": "basic_test", "input": HELLO, "tags": {"user": "u-1"}})
    inference_id = r.json()["inference_id"]
    rows = await stored(observability, "SELECT * FROM ChatInference WHERE id = {id:UUID}", id=uuid.UUID(inference_id))
    assert len(rows) == 1
    row = rows[0]
    assert (row["function_name"], row["variant_name"], row["episode_id"]) == (
        "basic_test",
        "test",
        r.json()["episode_id"],
    )
    assert orjson.loads(row["input"]) == {
        "system": SYSTEM,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
    }
    assert orjson.loads(row["output"]) == r.json()["content"]
    assert row["tags"] == {"user": "u-1"}
    assert row["processing_time_ms"] >= 0
    models = await observability.query(
        "SELECT * FROM ModelInference WHERE inference_id = {id:UUID}", {"id": uuid.UUID(inference_id)}
    )
    assert len(models) == 1
    model = models[0]
    assert (model["model_name"], model["model_provider_name"]) == ("good", "dummy")
    assert (model["input_tokens"], model["output_tokens"], model["finish_reason"]) == (10, 1, "stop")
    assert float(model["cost"]) == pytest.approx(0.00018)
    assert model["system"] == "You are a helpful and friendly assistant named Alfred"
    assert orjson.loads(model["input_messages"]) == [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]
    assert model["raw_request"] == "raw request"
    assert (model["function_name"], model["variant_name"]) == ("basic_test", "test")


async def test_json_and_streaming_rows(gateway, observability):
    input_ = {"messages": [{"role": "user", "content": {"country": "Japan"}}]}
    r = await gateway.post("/inference", json={"function_name": "json_success", "input": input_})
    json_id = uuid.UUID(r.json()["inference_id"])
    r = await gateway.post("/inference", json={"function_name": "basic_test", "input": HELLO, "stream": True})
    stream_id = uuid.UUID(orjson.loads(r.text.split("\n\n")[0].removeprefix("data: "))["inference_id"])
    rows = await stored(
        observability, "SELECT output, output_schema FROM JsonInference WHERE id = {id:UUID}", id=json_id
    )
    assert orjson.loads(rows[0]["output"]) == {"raw": '{"answer":"Hello"}', "parsed": {"answer": "Hello"}}
    assert orjson.loads(rows[0]["output_schema"])["required"] == ["answer"]
    rows = await observability.query(
        "SELECT output, ttft_ms FROM ChatInference WHERE id = {id:UUID}", {"id": stream_id}
    )
    assert orjson.loads(rows[0]["output"])[0]["text"].startswith("Wally, the golden retriever")
    assert rows[0]["ttft_ms"] is not None
    models = await observability.query(
        "SELECT output_tokens, ttft_ms, cost FROM ModelInference WHERE inference_id = {id:UUID}", {"id": stream_id}
    )
    assert models[0]["output_tokens"] == 16 and models[0]["ttft_ms"] is not None
    assert float(models[0]["cost"]) == pytest.approx(0.00027)


async def test_lookup_tables_by_id_episode_and_tag(gateway, observability):
    r = await gateway.post(
        "/inference", json={"function_name": "basic_test", "input": HELLO, "tags": {"experiment": "lookup"}}
    )
    body = r.json()
    by_id = await stored(
        observability,
        "SELECT function_name, function_type FROM InferenceById WHERE id_uint = toUInt128({id:UUID})",
        id=uuid.UUID(body["inference_id"]),
    )
    assert by_id == [{"function_name": "basic_test", "function_type": "chat"}]
    by_episode = await observability.query(
        "SELECT uint_to_uuid(id_uint) AS id FROM InferenceByEpisodeId WHERE episode_id_uint = toUInt128({e:UUID})",
        {"e": uuid.UUID(body["episode_id"])},
    )
    assert by_episode == [{"id": body["inference_id"]}]
    by_tag = await observability.query(
        "SELECT inference_id FROM InferenceTag WHERE function_name = 'basic_test' AND key = 'experiment' "
        "AND value = 'lookup'"
    )
    assert {"inference_id": body["inference_id"]} in by_tag


async def test_concurrent_inferences_give_exactly_one_row_each(gateway, observability):
    tag = uuid.uuid4().hex
    responses = await asyncio.gather(
        *[
            gateway.post("/inference", json={"function_name": "weighted", "input": PLAIN, "tags": {"batch": tag}})
            for _ in range(40)
        ]
    )
    assert all(r.status_code == 200 for r in responses)
    rows = await stored(
        observability,
        "SELECT count() AS n, uniqExact(id) AS ids FROM ChatInference WHERE tags['batch'] = {t:String}",
        t=tag,
    )
    assert rows == [{"n": 40, "ids": 40}]


async def test_dryrun_and_failed_requests_store_nothing(gateway, observability):
    tag = uuid.uuid4().hex
    await gateway.post(
        "/inference", json={"function_name": "basic_test", "input": HELLO, "dryrun": True, "tags": {"t": tag}}
    )
    await gateway.post("/inference", json={"function_name": "all_fail", "input": PLAIN, "tags": {"t": tag}})
    await gateway.post("/inference", json={"function_name": "basic_test", "input": PLAIN, "tags": {"t": tag}})
    rows = await stored(observability, "SELECT count() AS n FROM ChatInference WHERE tags['t'] = {t:String}", t=tag)
    assert rows == [{"n": 0}]


async def test_migrations_are_idempotent(writer):
    assert await writer.store.migrate() == []
    rows = await writer.store.query("SELECT migration_id FROM TensorZeroMigration ORDER BY migration_id")
    assert [r["migration_id"] for r in rows] == [m.id for m in MIGRATIONS]


async def test_outage_loses_nothing_and_duplicates_nothing(gateway, observability, writer):
    """Detach the table (inserts fail for real), serve traffic, attach it back, count."""
    tag = uuid.uuid4().hex
    await observability.flush()
    await writer.store.command("DETACH TABLE ChatInference")
    try:
        responses = [
            await gateway.post(
                "/inference", json={"function_name": "basic_test", "input": HELLO, "tags": {"outage": tag}}
            )
            for _ in range(12)
        ]
        assert all(r.status_code == 200 for r in responses)
        status = await observability.flush()
        assert status["spooled_rows"] >= 12
    finally:
        await writer.store.command("ATTACH TABLE ChatInference")
    status = await observability.flush()
    assert status["spooled_rows"] == 0
    await writer.writer.replay()  # a second replay of the same batches must not duplicate
    rows = await observability.query(
        "SELECT count() AS n, uniqExact(id) AS ids FROM ChatInference WHERE tags['outage'] = {t:String}", {"t": tag}
    )
    assert rows == [{"n": 12, "ids": 12}]
    ids = {r.json()["inference_id"] for r in responses}
    stored_ids = await observability.query("SELECT id FROM ChatInference WHERE tags['outage'] = {t:String}", {"t": tag})
    assert {r["id"] for r in stored_ids} == ids


async def test_unreachable_server_spools_and_bounded_buffer(tmp_path):
    """A writer pointed at a ClickHouse server that is not there keeps every row in the spool;
    past its buffer limit, it flushes (into the spool) at once."""
    store = ClickHouseStore("http://default:secret@127.0.0.1:9/tensorzero")
    spool = Spool(tmp_path / "spool.jsonl")
    writer = BatchWriter(store, spool, Journal(tmp_path / "journal"), max_rows=10, max_buffered_rows=25)
    await writer.start()
    for index in range(40):
        await writer.submit(f"t{index}", [("ModelProviderFailure", [{"id": index}])])
        await asyncio.sleep(0)
    assert writer.buffered_rows <= 25
    await writer.flush()
    assert spool.pending_rows() == 40
    assert await writer.replay() == 0
    assert spool.pending_rows() == 40
    assert "secret" not in repr(store)
    await writer.close()
    store.close()


def test_dsn_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("TENSORZERO_CLICKHOUSE_URL", raising=False)
    assert resolve_dsn(None, tmp_path) == f"chdb://{tmp_path / '.tensorzero' / 'clickhouse'}"
    assert resolve_dsn("http://ch:8123/db", tmp_path) == "http://ch:8123/db"
    monkeypatch.setenv("TENSORZERO_CLICKHOUSE_URL", "https://u:pw@ch:8443/tz")
    assert resolve_dsn("http://ignored:8123", tmp_path) == "https://u:pw@ch:8443/tz"
    assert redact("https://u:pw@ch:8443/tz") == "https://u:***@ch:8443/tz"
    monkeypatch.setenv("TENSORZERO_CLICKHOUSE_URL", "postgres://x")
    with pytest.raises(ValueError, match="must start with"):
        resolve_dsn(None, tmp_path)


def test_tzray_migrate_creates_the_schema_once(tmp_path):
    env = {**os.environ, "TENSORZERO_CLICKHOUSE_URL": f"chdb://{tmp_path / 'db'}"}
    config = str(Path(__file__).resolve().parent.parent / "config" / "quickstart" / "tensorzero.toml")
    run = [sys.executable, "-m", "tensorzero_ray.cli", "migrate", "--config", config]
    first = subprocess.run(run, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert f"applied {[m.id for m in MIGRATIONS]}" in first.stdout
    second = subprocess.run(run, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and "up to date" in second.stdout
