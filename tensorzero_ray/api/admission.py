"""Load shedding for a Gateway replica: past capacity, new work gets a fast 503 with
`Retry-After` instead of joining a queue that makes every request late.

Capacity is read from the replica's event loop: a probe asks to wake every 10 ms and notes
how late it woke. While the replica keeps up it wakes on time; once its CPU is saturated
every wake-up is late, since each waits for a turn behind every request in progress. Like
CoDel, the replica counts as overloaded when even the most punctual wake-up of two intervals
in a row was late, so a single pause (a garbage collection) does not shed, and one punctual
interval ends the shedding; and only while enough requests are in flight to form a queue.
Requests that wait on a slow provider cost no CPU
and make no wake-up late: a thousand slow LLM calls in flight are not an overload. A bound on
requests in flight caps memory."""

from __future__ import annotations

import asyncio
import math
import random

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from tensorzero_ray import __version__

# Paths whose POSTs start work; reads, health and the UI are always served.
MIN_SHARE = 0.05
WORK_PATHS = ("/inference", "/batch_inference", "/feedback", "/openai/v1/", "/v1/replay", "/v1/curation/")


class LoadShedder:
    def __init__(
        self,
        max_late_s: float = 0.002,
        interval_s: float = 0.1,
        probe_every_s: float = 0.01,
        max_in_flight: int = 10_000,
        min_queue: int = 64,
    ):
        self.max_late_s = max_late_s
        self.interval_s = interval_s
        self.probe_every_s = probe_every_s
        self.max_in_flight = max_in_flight
        # A late loop with few requests in flight is a busy machine, not a queue: a handful of
        # requests cannot wait long behind each other, so none is refused for it.
        self.min_queue = min_queue
        self.overloaded = False
        self.late_s = 0.0
        # The share of new work taken: cut while overloaded, grown back while not, so the
        # replica settles near what it can serve instead of swinging between all and none.
        self.admitted_share = 1.0
        self.in_flight = 0
        self.refused = 0
        self._probe: asyncio.Task | None = None

    def ensure_started(self) -> None:
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._measure())

    async def _measure(self) -> None:
        loop = asyncio.get_running_loop()
        window_min, window_end = math.inf, loop.time() + self.interval_s
        previous_min = 0.0
        while True:
            before = loop.time()
            await asyncio.sleep(self.probe_every_s)
            now = loop.time()
            window_min = min(window_min, now - before - self.probe_every_s)
            if now >= window_end:
                self.late_s = min(window_min, previous_min)
                self.overloaded = self.late_s > self.max_late_s
                previous_min = window_min
                if self.overloaded:
                    self.admitted_share = max(MIN_SHARE, self.admitted_share * 0.5)
                else:
                    self.admitted_share = min(1.0, self.admitted_share + 0.05)
                window_min, window_end = math.inf, now + self.interval_s

    def refusal(self) -> str | None:
        """Why new work is refused now, or None to take it."""
        queue = self.in_flight >= self.min_queue
        if queue and self.admitted_share < 1.0 and random.random() >= self.admitted_share:
            return f"the gateway is over capacity (its event loop runs {self.late_s * 1000:.0f} ms behind)"
        if self.in_flight >= self.max_in_flight:
            return f"the gateway is over capacity ({self.in_flight} requests in flight)"
        return None


class Admission:
    """Pure ASGI middleware in front of the gateway's routes."""

    def __init__(self, app: ASGIApp, shedder: LoadShedder):
        self.app = app
        self.shedder = shedder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(WORK_PATHS):
            await self.app(scope, receive, send)
            return
        shedder = self.shedder
        shedder.ensure_started()
        reason = shedder.refusal()
        if reason is not None:
            shedder.refused += 1
            await _overloaded(send, reason)
            return
        shedder.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            shedder.in_flight -= 1


async def _overloaded(send: Send, reason: str) -> None:
    body = orjson.dumps({"error": f"{reason}; retry after a second"})
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
                (b"x-tensorzero-gateway-version", __version__.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
