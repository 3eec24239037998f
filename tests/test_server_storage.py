"""With a ClickHouse server DSN there is no single writer: each replica writes for itself and
reads directly, and a replica that dies leaves its journal and spool to the next writer on
its node. The server is ClickHouse's HTTP interface over chDB (tests/mocks/clickhouse_server.py),
reached through clickhouse-connect's real HTTP client."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tensorzero_ray.cli import main as tzray_main
from tensorzero_ray.store import ClickHouseStore
from tensorzero_ray.store.observability import ObservabilityClient, StorageSettings, outbox_root, writers_root
from tensorzero_ray.store.rows import ChatInferenceRow
from tensorzero_ray.store.writer_folders import finish_orphans
from tests.mocks.clickhouse_server import ClickHouseServer
from tests.test_durability import rows

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = ClickHouseServer(tmp_path_factory.mktemp("clickhouse-server")).start()
    yield running
    running.stop()


def settings_for(dsn: str, tmp_path: Path) -> StorageSettings:
    return StorageSettings(
        dsn=dsn, spool_path=str(tmp_path / "spool" / "writes.jsonl"), required=True, flush_interval_s=3600
    )


def inferences(tag: str, n: int) -> list[ChatInferenceRow]:
    return [ChatInferenceRow.model_validate(row) for row in rows(tag, n)]


async def stored(dsn: str, tag: str) -> tuple[int, int]:
    store = ClickHouseStore(dsn)
    try:
        found = await store.query(
            "SELECT count() AS n, uniqExact(id) AS ids FROM ChatInference WHERE tags['durability'] = {t:String}",
            {"t": tag},
        )
    finally:
        store.close()
    return found[0]["n"], found[0]["ids"]


def die(client: ObservabilityClient) -> None:
    """Stop a replica's writer the way a killed process stops: nothing flushed, the folder's
    lock released with the process."""
    writer = client._writer.writer
    writer._task.cancel()
    writer.journal._task.cancel()
    writer.journal._handle.close()
    client._writer.folder._lock.close()


async def test_each_replica_writes_for_itself_and_reads_directly(server, tmp_path):
    dsn, tag = server.dsn("replicas"), uuid.uuid4().hex
    settings = settings_for(dsn, tmp_path)
    first, second = ObservabilityClient(settings), ObservabilityClient(settings)
    await first.record(inferences(tag, 3))
    await second.record(inferences(tag, 4))
    # A read through a replica sees what that replica acknowledged, without any other writer.
    mine = await first.query("SELECT count() AS n FROM ChatInference WHERE tags['durability'] = {t:String}", {"t": tag})
    assert mine == [{"n": 3}]
    status = await second.status()
    assert status["writers"] == "one per replica" and status["buffered_rows"] == 4
    assert status["target"] == dsn.replace(":pw@", ":***@")
    assert len(list(writers_root(settings).iterdir())) == 2
    await first.close()
    await second.close()
    assert await stored(dsn, tag) == (7, 7)
    # Nothing went through an outbox, and a graceful close leaves no folder behind.
    assert not outbox_root(settings).exists() and not list(writers_root(settings).iterdir())


async def test_what_a_dead_replica_acknowledged_is_stored_once_by_the_next_writer(server, tmp_path):
    dsn, tag = server.dsn("orphans"), uuid.uuid4().hex
    settings = settings_for(dsn, tmp_path)
    dead = ObservabilityClient(settings)
    await dead.record(inferences(tag, 5))
    # A flush whose inserts reached the server but whose completion never reached the journal:
    # the next writer repeats it, and the server recognises the same tokens.
    journal = dead._writer.writer.journal
    append = journal.append
    journal.append = lambda record: append({"s": []}) if "d" in record else append(record)
    await dead._writer.writer.flush()
    journal.append = append
    await dead.record(inferences(tag, 6))
    die(dead)
    assert await stored(dsn, tag) == (5, 5)

    successor = ObservabilityClient(settings)
    await successor.record(inferences(tag, 1))
    assert await successor._writer.writer.adopt_orphans() == 0  # no outboxes: folders are finished
    assert await stored(dsn, tag) == (11, 11)
    await successor.close()
    assert await stored(dsn, tag) == (12, 12)
    assert not list(writers_root(settings).iterdir())


async def test_a_dead_replicas_rows_wait_on_its_disk_while_the_server_is_away(tmp_path):
    server = ClickHouseServer(tmp_path / "data").start()
    try:
        dsn, tag = server.dsn("outage"), uuid.uuid4().hex
        settings = settings_for(dsn, tmp_path)
        dead = ObservabilityClient(settings)
        await dead.record(inferences(tag, 8))
        die(dead)
        server.stop()
        store = ClickHouseStore(dsn)
        assert await finish_orphans(writers_root(settings), store, max_rows=1000) == 0
        (left,) = list(writers_root(settings).iterdir())
        assert (left / "writes.jsonl").exists()  # spooled in the dead writer's folder
        server.start()
        assert await finish_orphans(writers_root(settings), store, max_rows=1000) == 1
        store.close()
        assert await stored(dsn, tag) == (8, 8)
        assert not list(writers_root(settings).iterdir())
    finally:
        server.stop()


def test_up_refuses_a_writer_resource_with_a_server(monkeypatch, capsys):
    monkeypatch.setenv("TENSORZERO_CLICKHOUSE_URL", "http://default:secret@ch.internal:8123/tensorzero")
    config = str(ROOT / "config/quickstart/tensorzero.toml")
    assert tzray_main(["up", "--config", config, "--writer-resource", "tensorzero_storage"]) == 2
    error = capsys.readouterr().err
    assert "every replica writes for itself" in error and "secret" not in error
