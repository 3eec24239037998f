"""The prompt search's trials per minute with trials evaluated in parallel on Ray (`--workers
N`) against one trial at a time (`--workers 1`), in one run on one `tzray up` stack: a mock
OpenAI server that answers after `--delay-ms`, a dataset twice the minibatch, the same search
twice (`ray job submit -- python jobs/prompt_optimization.py`, job start-up and the final
validation included). Raw numbers go to bench/results/prompt-search-*.json. Not a pass/fail test.

    .venv/bin/python bench/prompt_search.py [--trials 12] [--workers 4] [--delay-ms 500] [--minibatch 32]
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

CONFIG = (
    MOCK_FUNCTION
    + """system_template = "system.minijinja"

[functions.ask.evaluators.mentions_fox]
type = "regex"
must_match = "fox"
"""
)


def search(url: str, config: Path, output: Path, workers: int, trials: int, minibatch: int) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ray"), "job", "submit", "--", "python",
            str(ROOT / "jobs" / "prompt_optimization.py"), "--gateway-url", url, "--config", str(config),
            "--function-name", "ask", "--variant-name", "only", "--dataset-name", "questions",
            "--proposal-model", "slow", "--output", str(output), "--trials", str(trials), "--minibatch", str(minibatch),
            "--steps", "1", "--top", "1", "--workers", str(workers), "--concurrency", "4", "--instructions", "2",
            "--inference-cache", "off",
        ],
        capture_output=True, text=True, env={**os.environ, "RAY_AUTH_MODE": "token"},
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stdout[-3000:] + done.stderr[-3000:])
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--delay-ms", type=float, default=500)
    parser.add_argument("--minibatch", type=int, default=32, help="datapoints per trial (4 in flight per worker)")
    args = parser.parse_args()
    points = [
        {"type": "chat", "function_name": "ask", "output": [{"type": "text", "text": "fox"}],
         "input": {"messages": [{"role": "user", "content": f"question {n}"}]}}
        for n in range(2 * args.minibatch + 8)
    ]  # fmt: skip
    files = {"system.minijinja": "Answer the question."}
    with stack_on_mock(CONFIG, delay_ms=args.delay_ms, tokens=20, prefix="bench-prompt-", files=files) as (url, home):
        created = httpx.post(f"{url}/v1/datasets/questions/datapoints", json={"datapoints": points}, timeout=60)
        created.raise_for_status()
        config = home / "tensorzero.toml"
        serial_s = search(url, config, home / "serial", 1, args.trials, args.minibatch)
        parallel_s = search(url, config, home / "parallel", args.workers, args.trials, args.minibatch)
    result = {
        "trials": args.trials,
        "workers": args.workers,
        "delay_ms": args.delay_ms,
        "serial_s": round(serial_s, 1),
        "parallel_s": round(parallel_s, 1),
        "serial_trials_per_min": round(args.trials / serial_s * 60, 1),
        "parallel_trials_per_min": round(args.trials / parallel_s * 60, 1),
    }
    result["ratio"] = round(result["parallel_trials_per_min"] / result["serial_trials_per_min"], 2)
    print(
        f"{args.trials} trials of {args.minibatch} datapoints each, the model answering after {args.delay_ms:g} ms\n"
        f"  {args.workers} trials at a time on Ray: {result['parallel_trials_per_min']} trials/min ({result['parallel_s']} s)\n"
        f"  one trial at a time:      {result['serial_trials_per_min']} trials/min ({result['serial_s']} s)\n"
        f"  ratio: {result['ratio']}x (job start-up, proposals and validation included in both)"
    )
    out = ROOT / "bench" / "results" / f"prompt-search-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
