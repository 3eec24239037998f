"""An acknowledged row is stored exactly once, whatever dies when: the writer's journal, its
recovery after a crash, repeated flushes under the same tokens, and the client's fallback."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest

from tensorzero_ray.ids import uuid7
from tensorzero_ray.store import BatchWriter, Spool
from tensorzero_ray.store import writer as writer_module
from tensorzero_ray.store.journal import Journal
from tensorzero_ray.store.observability import ObservabilityClient, outbox_root
from tensorzero_ray.store.rows import ChatInferenceRow


def rows(tag: str, n: int) -> list[dict]:
    return [
        ChatInferenceRow(
            id=uuid7(),
            function_name="f",
            variant_name="v",
            episode_id=uuid7(),
            input="{}",
            output="[]",
            inference_params="{}",
            tags={"durability": tag},
        ).record()
        for _ in range(n)
    ]


def new_writer(store, tmp_path, **options) -> BatchWriter:
    options.setdefault("flush_interval_s", 3600)
    return BatchWriter(store, Spool(tmp_path / "spool.jsonl"), Journal(tmp_path / "journal"), **options)


def crash(writer: BatchWriter) -> None:
    """Stop a writer the way a killed process stops: nothing flushed, nothing closed."""
    writer._task.cancel()
    writer.journal._task.cancel()
    writer.journal._handle.close()


async def count(store, tag: str) -> dict:
    found = await store.query(
        "SELECT count() AS n, uniqExact(id) AS ids FROM ChatInference WHERE tags['durability'] = {t:String}",
        {"t": tag},
    )
    return found[0]


async def test_acknowledged_batches_survive_a_crash(writer, tmp_path):
    tag = uuid.uuid4().hex
    first = new_writer(writer.store, tmp_path)
    await first.start()
    await asyncio.gather(*[first.submit(f"{tag}-{i}", [("ChatInference", rows(tag, 3))]) for i in range(20)])
    crash(first)
    assert await count(writer.store, tag) == {"n": 0, "ids": 0}

    second = new_writer(writer.store, tmp_path)
    await second.start()
    await second.flush()
    assert await count(writer.store, tag) == {"n": 60, "ids": 60}
    await second.close()
    assert second.journal.segments() == []


async def test_close_flushes_what_is_buffered(writer, tmp_path):
    """Graceful shutdown: rows still in the buffer are inserted before the writer stops."""
    tag = uuid.uuid4().hex
    slow = new_writer(writer.store, tmp_path)
    await slow.start()
    await slow.submit("close", [("ChatInference", rows(tag, 5))])
    await slow.close()
    assert await count(writer.store, tag) == {"n": 5, "ids": 5}


async def test_an_interrupted_flush_is_repeated_under_the_same_tokens(writer, tmp_path):
    """The crash came after the insert and before the flush was marked done: the repeat must
    be deduplicated, not stored twice."""
    tag = uuid.uuid4().hex
    first = new_writer(writer.store, tmp_path)
    await first.start()
    batches = [(f"{tag}-{i}", [("ChatInference", rows(tag, 2))]) for i in range(5)]
    for token, batch in batches:
        await first.submit(token, batch)
    flush_id = f"{first.journal.segment}:99"
    await first.journal.append({"f": flush_id})
    for token, table, group in first._groups(flush_id, batches):
        await writer.store.insert(table, group, token=token)
    crash(first)
    assert await count(writer.store, tag) == {"n": 10, "ids": 10}

    second = new_writer(writer.store, tmp_path)
    await second.start()
    await second.flush()
    assert await count(writer.store, tag) == {"n": 10, "ids": 10}
    await second.close()


async def test_a_batch_sent_again_after_a_crash_is_stored_once(writer, tmp_path):
    tag = uuid.uuid4().hex
    batch = [("ChatInference", rows(tag, 4))]
    first = new_writer(writer.store, tmp_path)
    await first.start()
    await first.submit("retried", batch)
    await first.submit("retried", batch)
    crash(first)
    second = new_writer(writer.store, tmp_path)
    await second.start()
    await second.submit("retried", batch)  # the client never saw the first answer
    await second.close()
    assert await count(writer.store, tag) == {"n": 4, "ids": 4}


async def test_a_torn_last_line_is_skipped(writer, tmp_path):
    tag = uuid.uuid4().hex
    first = new_writer(writer.store, tmp_path)
    await first.start()
    await first.submit("whole", [("ChatInference", rows(tag, 2))])
    crash(first)
    segment = tmp_path / "journal" / first.journal.segment
    line = orjson.dumps({"b": "torn", "w": [["ChatInference", rows(tag, 1)]]})
    segment.write_bytes(segment.read_bytes() + line[: len(line) // 2])
    second = new_writer(writer.store, tmp_path)
    await second.start()
    await second.close()
    assert await count(writer.store, tag) == {"n": 2, "ids": 2}


async def test_segments_rotate_and_finished_ones_are_deleted(writer, tmp_path, monkeypatch):
    monkeypatch.setattr(writer_module, "SEGMENT_BYTES", 2_000)
    tag = uuid.uuid4().hex
    journaled = new_writer(writer.store, tmp_path)
    await journaled.start()
    for i in range(10):
        await journaled.submit(f"{tag}-{i}", [("ChatInference", rows(tag, 2))])
        await journaled.flush()
    assert len(journaled.journal.segments()) <= 2
    await journaled.close()
    assert await count(writer.store, tag) == {"n": 20, "ids": 20}


async def test_recent_inferences_are_known_before_they_are_inserted(writer, tmp_path):
    tag = uuid.uuid4().hex
    journaled = new_writer(writer.store, tmp_path)
    await journaled.start()
    batch = rows(tag, 1)
    await journaled.submit(tag, [("ChatInference", batch)])
    found = journaled.recent.find(batch[0]["id"], "inference")
    assert found["function_name"] == "f" and found["function_type"] == "chat"
    assert journaled.recent.find(batch[0]["episode_id"], "episode")["variant_name"] == "v"
    crash(journaled)
    recovered = new_writer(writer.store, tmp_path)
    await recovered.start()
    assert recovered.recent.find(batch[0]["id"], "inference") is not None
    await recovered.close()


class UnreachableWriter:
    """A writer handle whose replica is gone: every call fails, as Ray's do then."""

    class _Method:
        async def remote(self, *args):
            raise ConnectionError("writer replica is restarting")

    write = find_recent = _Method()


def own_outboxes(storage, tmp_path):
    """Settings whose outboxes no other test's writer adopts in the background meanwhile."""
    return storage.model_copy(update={"spool_path": str(tmp_path / "spool" / "writes.jsonl")})


async def test_a_replica_that_dies_before_delivering_is_adopted_by_the_writer(writer, storage, tmp_path, monkeypatch):
    """`record` returns once the rows are in the replica's own outbox; when the replica dies
    with them undelivered, the writer takes them over, once."""
    monkeypatch.setattr(ObservabilityClient, "RETRY_DELAYS_S", (0.01,))
    tag = uuid.uuid4().hex
    settings = own_outboxes(storage, tmp_path)
    client = ObservabilityClient(settings, UnreachableWriter())
    records = [ChatInferenceRow.model_validate(r) for r in rows(tag, 3)]
    await asyncio.gather(client.record(records[:2]), client.record(records[2:]))
    assert (await client.find_recent(str(records[0].id), "inference"))[0]["function_name"] == "f"
    assert await client._adoption == 0  # its start-up look for dead outboxes, before it dies
    client._sender.cancel()  # the replica dies: nothing is delivered, its lock is released
    client._outbox.journal._task.cancel()
    client._outbox._owner.close()
    adopter = new_writer(writer.store, tmp_path, outboxes=outbox_root(settings))
    await adopter.start()
    assert await adopter.adopt_orphans() == 2
    assert await adopter.adopt_orphans() == 0
    await adopter.close()
    assert await count(writer.store, tag) == {"n": 3, "ids": 3}


async def test_a_replica_that_starts_on_the_node_delivers_what_a_dead_one_left(writer, storage, tmp_path, monkeypatch):
    """On a cluster the writer may run on another node than the replica that died; the next
    replica on that node takes the outbox over and delivers it, once."""
    monkeypatch.setattr(ObservabilityClient, "RETRY_DELAYS_S", (0.01,))
    tag = uuid.uuid4().hex
    storage = own_outboxes(storage, tmp_path)
    dead = ObservabilityClient(storage, UnreachableWriter())
    await dead.record([ChatInferenceRow.model_validate(r) for r in rows(tag, 3)])
    assert await dead._adoption == 0
    dead._sender.cancel()
    dead._outbox.journal._task.cancel()
    dead._outbox._owner.close()
    successor = ObservabilityClient(storage, writer)
    await successor.record([ChatInferenceRow.model_validate(r) for r in rows(uuid.uuid4().hex, 1)])
    await successor.drain()
    assert not dead._outbox.folder.exists()
    assert await successor.adopt_orphans() == 0  # its own outbox is alive: never taken
    await writer.flush()
    assert await count(writer.store, tag) == {"n": 3, "ids": 3}
    await successor.close()


async def test_a_live_replica_outbox_is_not_adopted(writer, storage):
    client = ObservabilityClient(storage, writer)
    await client.record([ChatInferenceRow.model_validate(r) for r in rows(uuid.uuid4().hex, 1)])
    assert await writer.writer.adopt_orphans() == 0
    await client.close()
    assert not client._outbox.folder.exists()


@pytest.mark.parametrize("sync", [True, False])
async def test_journal_group_commit_orders_lines(tmp_path, sync):
    journal = Journal(tmp_path / "j", fsync=sync)
    await journal.open()
    await asyncio.gather(*[journal.append({"b": str(i)}) for i in range(100)])
    closing = journal.rotate()
    await journal.append({"b": "next"})
    await journal.close()
    assert [r["b"] for r in journal.read(closing)] == [str(i) for i in range(100)]
    assert [r["b"] for r in journal.read(journal.segment)] == ["next"]
