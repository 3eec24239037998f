"""What an adaptive experiment costs the gateway per request, against static weights, in one
run: the same requests through the gateway's ASGI app (dummy provider, in-process routers, no
observability) for a function sampled by static weights and for the same function under an
adaptive experiment whose routers hold a long state history (as after weeks of updates), plus
the sampler call alone. Prints latency and CPU per request and the ratios.

    .venv/bin/python bench/experiments.py [--requests 2000] [--states 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

from tensorzero_ray.api.gateway import create_app
from tensorzero_ray.config import load_config
from tensorzero_ray.experimentation.controller import StateEntry
from tensorzero_ray.experimentation.sampling import AdaptiveSampler, VariantSampler, episode_draw
from tensorzero_ray.functions.routers import LocalRouters
from tensorzero_ray.ids import uuid7, uuid7_timestamp_ms

VARIANTS = """
[functions.pick.variants.a]
type = "chat_completion"
model = "dummy::good"
[functions.pick.variants.b]
type = "chat_completion"
model = "dummy::alternate"
[functions.pick.variants.c]
type = "chat_completion"
model = "dummy::good"
"""
STATIC = """
[functions.pick]
type = "chat"
[functions.pick.experimentation]
type = "static"
candidate_variants = { a = 1.0, b = 1.0, c = 1.0 }
"""
ADAPTIVE = """
[metrics.liked]
type = "boolean"
optimize = "max"
level = "inference"
[functions.pick]
type = "chat"
[functions.pick.experimentation]
type = "adaptive"
candidate_variants = ["a", "b", "c"]
metric = "liked"
"""
BODY = {"function_name": "pick", "input": {"messages": [{"role": "user", "content": "Hi"}]}}


class History:
    """Stands in for the controller's answer: `states` published states, five minutes apart."""

    def __init__(self, states: int):
        now = int(time.time() * 1000)
        self.entries = [
            (now - (states - i) * 300_000, {"a": 0.2 + 0.6 * (i % 7) / 7, "b": 0.1, "c": 0.7 - 0.6 * (i % 7) / 7})
            for i in range(states)
        ]

    async def changes(self, since: int, timeout_s: float):
        if since >= len(self.entries):
            await asyncio.sleep(timeout_s)  # nothing new: a long poll waits, as the controller does
        found = [StateEntry("pick", "", at, p) for at, p in self.entries[since:]]
        return len(self.entries), found


async def measure(config_text: str, experiments, requests: int) -> tuple[list[float], float]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tensorzero.toml"
        path.write_text(textwrap.dedent(config_text + VARIANTS))
        config = load_config(str(path))
    routers = LocalRouters(config, None, experiments=experiments)
    app = create_app(config, routers, None)
    latencies = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as http:
        for _ in range(50):  # warm up, and let the routers take the history
            assert (await http.post("/inference", json=BODY)).status_code == 200
        cpu = time.process_time()
        for _ in range(requests):
            started = time.perf_counter()
            answer = await http.post("/inference", json=BODY)
            latencies.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200, answer.text
        cpu = (time.process_time() - cpu) / requests * 1000
    await routers.aclose()
    return latencies, cpu


def sampler_cost(states: int, calls: int = 20_000) -> tuple[float, float]:
    """Microseconds per choice: static weights against an adaptive history of `states`."""
    static = VariantSampler({"a": 1.0, "b": 1.0, "c": 1.0}, [])
    adaptive = AdaptiveSampler(["a", "b", "c"], [])
    for at, p in History(states).entries:
        adaptive.apply(at, p)
    episodes = [uuid7() for _ in range(calls)]
    active = {"a", "b", "c"}
    results = []
    for sampler in (static, adaptive):
        started = time.perf_counter()
        for episode in episodes:
            sampler.choose(episode_draw("pick", episode), active, uuid7_timestamp_ms(episode))
        results.append((time.perf_counter() - started) / calls * 1e6)
    return results[0], results[1]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--states", type=int, default=10_000)
    args = parser.parse_args()
    static_ms, static_cpu = await measure(STATIC, None, args.requests)
    adaptive_ms, adaptive_cpu = await measure(ADAPTIVE, History(args.states), args.requests)
    plain_us, history_us = sampler_cost(args.states)

    def p(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[int(q) - 1]

    print(f"{args.requests} requests each, in-process gateway, dummy provider, {args.states} stored states")
    print(
        f"  static weights: p50 {p(static_ms, 50):.3f} ms, p99 {p(static_ms, 99):.3f} ms, CPU {static_cpu:.3f} ms/request"
    )
    print(
        f"  adaptive:       p50 {p(adaptive_ms, 50):.3f} ms, p99 {p(adaptive_ms, 99):.3f} ms, CPU {adaptive_cpu:.3f} ms/request"
    )
    print(
        f"  ratio adaptive/static: p50 {p(adaptive_ms, 50) / p(static_ms, 50):.3f}x, CPU {adaptive_cpu / static_cpu:.3f}x"
    )
    print(f"  the choice alone: {plain_us:.2f} us static, {history_us:.2f} us adaptive (hash, UUIDv7 time, bisect)")
    print("  no database or network call per request: the routers read the published states from memory")


if __name__ == "__main__":
    asyncio.run(main())
