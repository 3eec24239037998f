"""Overload: what the stack does past capacity, and how fast it comes back.

One run against `tzray up` on the fast mock provider (observability on):
1. baseline: a modest open-loop rate, the gateway and the direct call to the mock side by side;
2. feedback right after inference: pairs sent one after the other, feedback latency and
   refusals (a refusal is a feedback the gateway said had no inference);
3. burst: an open-loop rate well above capacity; the error mix (503 with Retry-After is the
   intended answer, timeouts and resets are not);
4. probe: one request every 50 ms for 5 s before the burst and for 20 s right after it; the
   time until the per-second median is back under twice the one before and stays there.
It prints ratios against the direct call and the baseline; raw numbers go to
bench/results/overload-*.json. Not a pass/fail test.

    .venv/bin/python bench/overload.py --burst-rate 600 --burst-duration 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from loadgen import run as open_loop  # noqa: E402
from run import MESSAGES, Stack, free_port  # noqa: E402


def quantiles(values: list[float]) -> dict:
    if not values:
        return {"p50_ms": None, "p99_ms": None}
    values = sorted(values)
    return {
        "p50_ms": round(values[len(values) // 2] * 1000, 1),
        "p99_ms": round(values[min(len(values) - 1, int(0.99 * len(values)))] * 1000, 1),
    }


async def feedback_after_inference(url: str, pairs: int, concurrency: int = 8) -> dict:
    latencies: list[float] = []
    outcomes: Counter = Counter()
    queue = list(range(pairs))

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            queue.pop()
            r = await client.post("/inference", json={"function_name": "function1", "input": {"messages": MESSAGES}})
            if r.status_code != 200:
                outcomes[f"inference {r.status_code}"] += 1
                continue
            started = time.perf_counter()
            f = await client.post(
                "/feedback",
                json={"metric_name": "liked", "value": True, "inference_id": r.json()["inference_id"]},
            )
            latencies.append(time.perf_counter() - started)
            refused = f.status_code == 400 and "does not exist" in f.text
            outcomes["refused" if refused else f"feedback {f.status_code}"] += 1

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await asyncio.gather(*[worker(client) for _ in range(concurrency)])
    return {"pairs": pairs, "outcomes": dict(outcomes), **quantiles(latencies)}


async def probe(url: str, threshold_s: float, duration_s: float, interval_s: float = 0.05) -> dict:
    """Seconds after the burst until every later probe answered 200 under the threshold."""
    points: list[tuple[float, int, float]] = []
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while time.perf_counter() - started < duration_s:
            sent = time.perf_counter()
            try:
                r = await client.post(
                    "/inference", json={"function_name": "function1", "input": {"messages": MESSAGES}}
                )
                status = r.status_code
            except httpx.HTTPError:
                status = 0
            took = time.perf_counter() - sent
            points.append((sent - started, status, took))
            await asyncio.sleep(max(0.0, interval_s - took))
    # One-second buckets: a bucket is normal when every probe got a 200 and its median is
    # under the threshold; recovery is the first normal bucket after which all are normal.
    buckets: dict[int, list[tuple[int, float]]] = {}
    for at, status, took in points:
        buckets.setdefault(int(at), []).append((status, took))
    normal = {
        second: all(status == 200 for status, _ in probes) and statistics.median(t for _, t in probes) < threshold_s
        for second, probes in buckets.items()
    }
    seconds = sorted(normal)
    recovered = next((s for s in seconds if all(normal[later] for later in seconds if later >= s)), None)
    medians = {s: round(statistics.median(t for _, t in buckets[s]) * 1000, 1) for s in seconds}
    return {"recovered_after_s": recovered, "probes": len(points), "median_ms_by_second": medians}


def summary(result) -> dict:
    mix = Counter(s.error or "200" for s in result.samples)
    return {
        "rate": result.rate,
        "sent": len(result.samples),
        "mix": dict(mix),
        **quantiles([s.latency_s for s in result.samples if s.ok]),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-rate", type=float, default=50)
    parser.add_argument("--burst-rate", type=float, default=600)
    parser.add_argument("--burst-duration", type=float, default=15)
    parser.add_argument("--pairs", type=int, default=300)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        mock_port = free_port()
        stack = Stack(Path(tmp), mock_port)
        try:
            stack.mock()
            port = stack.tzray("in_process", observability=True, extra=[])
            url = f"http://127.0.0.1:{port}"
            body = json.dumps({"function_name": "function1", "input": {"messages": MESSAGES}}).encode()
            direct_body = json.dumps({"model": "bench", "messages": MESSAGES}).encode()

            await open_loop("127.0.0.1", port, "/inference", body, 20, 3)  # warm-up
            direct = await open_loop("127.0.0.1", mock_port, "/v1/chat/completions", direct_body, args.baseline_rate, 5)
            baseline = await open_loop("127.0.0.1", port, "/inference", body, args.baseline_rate, 5)
            feedback = await feedback_after_inference(url, args.pairs)
            before = await probe(url, threshold_s=math.inf, duration_s=5)
            probe_p50 = statistics.median(before["median_ms_by_second"].values()) / 1000
            burst = await open_loop(
                "127.0.0.1", port, "/inference", body, args.burst_rate, args.burst_duration, timeout_s=10
            )
            base_p50 = baseline.percentile(0.5) or 0.01
            recovery = await probe(url, threshold_s=2 * probe_p50, duration_s=20)
        finally:
            stack.close()

    rows = {
        "direct": summary(direct),
        "baseline": summary(baseline),
        "feedback_after_inference": feedback,
        "burst": summary(burst),
        "probe_before_burst": before,
        "recovery": recovery,
    }
    out = ROOT / "bench" / "results" / f"overload-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    direct_p50 = direct.percentile(0.5) or 0.001
    served = sum(s.ok for s in burst.samples)
    fast_503 = [s.latency_s for s in burst.samples if s.error == "503"]
    print(json.dumps(rows, indent=2))
    print(f"baseline p50: gateway {base_p50 * 1000:.1f} ms = {base_p50 / direct_p50:.1f}x the direct call")
    print(
        f"burst at {args.burst_rate:.0f}/s: {served / args.burst_duration:.0f}/s served, "
        f"{len(fast_503)} answered 503 (median {statistics.median(fast_503) * 1000 if fast_503 else 0:.1f} ms), "
        f"{sum(s.error not in ('', '503') for s in burst.samples)} other errors"
    )
    print(
        f"after the burst, probes back under twice their pre-burst median ({probe_p50 * 1000:.1f} ms) "
        f"after {recovery['recovered_after_s']} s"
    )
    print(f"feedback right after inference: p50 {feedback['p50_ms']} ms, outcomes {feedback['outcomes']}")


if __name__ == "__main__":
    asyncio.run(main())
