"""SSE events that are ready together leave as one write; nothing is lost or reordered."""

from __future__ import annotations

import asyncio

import pytest

from tensorzero_ray.api.http_io import coalesce


async def test_ready_events_are_joined_and_later_ones_follow():
    gate = asyncio.Event()

    async def events():
        for i in range(5):
            yield f"data: {i}\n\n".encode()
        await gate.wait()
        yield b"data: late\n\n"

    out = coalesce(events())
    first = await out.__anext__()
    assert first == b"".join(f"data: {i}\n\n".encode() for i in range(5))
    gate.set()
    assert [piece async for piece in out] == [b"data: late\n\n"]


async def test_an_upstream_error_arrives_after_what_came_before_it():
    async def events():
        yield b"data: 1\n\n"
        raise RuntimeError("upstream broke")

    out = coalesce(events())
    assert await out.__anext__() == b"data: 1\n\n"
    with pytest.raises(RuntimeError, match="upstream broke"):
        await out.__anext__()


async def test_closing_the_consumer_stops_the_producer():
    stopped = asyncio.Event()

    async def events():
        try:
            while True:
                yield b"data: x\n\n"
                await asyncio.sleep(0.01)
        finally:
            stopped.set()

    out = coalesce(events())
    await out.__anext__()
    await out.aclose()
    await asyncio.wait_for(stopped.wait(), 2)
