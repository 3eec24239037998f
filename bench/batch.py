"""The Ray-native batch's throughput against the same requests sent one at a time, in one
run on one `tzray up` stack: a mock OpenAI server that answers after `--delay-ms` (a model's
time), N `/inference` requests written to a JSONL file, then `ray job submit -- python
jobs/batch_inference.py` over it, and the same bodies posted one after another with httpx.
Prints requests per second for each and the ratio (job start-up included); raw numbers go to
bench/results/batch-*.json. Not a pass/fail test.

    .venv/bin/python bench/batch.py [--requests 1000] [--delay-ms 200] [--workers 2] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from stack import MOCK_FUNCTION, stack_on_mock  # noqa: E402

CONFIG = MOCK_FUNCTION


def bodies(count: int) -> list[dict]:
    return [{"input": {"messages": [{"role": "user", "content": f"question {n}"}]}} for n in range(count)]


def as_job(url: str, requests: Path, workers: int, concurrency: int) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ray"), "job", "submit", "--", "python", str(ROOT / "jobs" / "batch_inference.py"),
            "--input", str(requests), "--gateway-url", url, "--function-name", "ask", "--workers", str(workers),
            "--concurrency", str(concurrency), "--shard-size", "50",
        ],
        capture_output=True, text=True, env={**os.environ, "RAY_AUTH_MODE": "token"},
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or "0 failed" not in done.stdout + done.stderr:
        raise SystemExit(done.stdout[-3000:] + done.stderr[-3000:])
    return elapsed


def one_at_a_time(url: str, lines: list[dict]) -> float:
    """What a user would write without the job: a loop over the HTTP API."""
    started = time.perf_counter()
    with httpx.Client(base_url=url, timeout=120) as http:
        for body in lines:
            response = http.post("/inference", json={"function_name": "ask", **body})
            response.raise_for_status()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--delay-ms", type=float, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    lines = bodies(args.requests)
    with stack_on_mock(CONFIG, delay_ms=args.delay_ms, tokens=50, prefix="bench-batch-") as (url, workdir):
        requests = workdir / "requests.jsonl"
        requests.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
        job_s = as_job(url, requests, args.workers, args.concurrency)
        loop_s = one_at_a_time(url, lines)
    result = {
        "requests": args.requests,
        "delay_ms": args.delay_ms,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "job_s": round(job_s, 1),
        "loop_s": round(loop_s, 1),
        "job_per_s": round(args.requests / job_s, 1),
        "loop_per_s": round(args.requests / loop_s, 1),
    }
    result["ratio"] = round(result["job_per_s"] / result["loop_per_s"], 2)
    print(
        f"{args.requests} inferences, the model answering after {args.delay_ms:g} ms\n"
        f"  ray job ({args.workers} workers x {args.concurrency}): {result['job_per_s']}/s ({result['job_s']} s,"
        " job start-up included)\n"
        f"  one at a time:                   {result['loop_per_s']}/s ({result['loop_s']} s)\n"
        f"  ratio: {result['ratio']}x"
    )
    out = ROOT / "bench" / "results" / f"batch-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
