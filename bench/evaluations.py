"""Evaluation throughput: one sweep (3 variants x N datapoints, dummy provider, two heuristic
evaluators) through `ray job submit -- python jobs/evaluate.py --variants ...`, against the
same work done one datapoint at a time with the Python client (inference, score, feedback),
in one run on one `tzray up` stack. Prints datapoints evaluated per second for each and the
ratio; raw numbers go to bench/results/evaluations-*.json. Not a pass/fail test.

    .venv/bin/python bench/evaluations.py --datapoints 2000 --workers 2 --concurrency 16
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from run import free_port  # noqa: E402

from tensorzero_ray.client import TensorZeroRayClient  # noqa: E402
from tensorzero_ray.evaluations.scoring import exact_match, output_text  # noqa: E402

VARIANTS = ["good", "alternate", "reasoner"]
CONFIG = """
[functions.story]
type = "chat"
[functions.story.variants.good]
type = "chat_completion"
model = "dummy::good"
[functions.story.variants.alternate]
type = "chat_completion"
model = "dummy::alternate"
[functions.story.variants.reasoner]
type = "chat_completion"
model = "dummy::reasoner"

[functions.story.evaluators.matches]
type = "exact_match"
[functions.story.evaluators.thunderous]
type = "regex"
must_match = "thunderous"
"""
MEGUMIN = (
    "Megumin gleefully chanted her spell, unleashing a thunderous explosion that lit up "
    "the sky and left a massive crater in its wake."
)


def seed(url: str, dataset: str, count: int) -> list[dict]:
    with httpx.Client(base_url=url, timeout=120) as http:
        for start in range(0, count, 500):
            points = [
                {
                    "type": "chat",
                    "function_name": "story",
                    "input": {"messages": [{"role": "user", "content": f"Tell story #{n}"}]},
                    "output": [{"type": "text", "text": MEGUMIN if n % 2 == 0 else "Something else."}],
                }
                for n in range(start, min(start + 500, count))
            ]
            assert http.post(f"/v1/datasets/{dataset}/datapoints", json={"datapoints": points}).status_code == 200
        deadline = time.monotonic() + 60
        while True:
            found = http.post(f"/v1/datasets/{dataset}/list_datapoints", json={"limit": count}).json()["datapoints"]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.5)


def sweep(url: str, config: Path, dataset: str, workers: int, concurrency: int) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ray"), "job", "submit", "--", "python", str(ROOT / "jobs" / "evaluate.py"),
            "--config-file", str(config), "--gateway-url", url, "--function-name", "story",
            "--dataset-name", dataset, "--variants", ",".join(VARIANTS), "--workers", str(workers),
            "--concurrency", str(concurrency),
        ],
        capture_output=True, text=True, env={**os.environ, "RAY_AUTH_MODE": "token"},
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stdout[-3000:] + done.stderr[-3000:])
    return elapsed


def one_at_a_time(url: str, points: list[dict]) -> float:
    """What a user would write without the runner: a loop over the client."""
    started = time.perf_counter()
    with TensorZeroRayClient(url) as client:
        for variant in VARIANTS:
            for point in points:
                response = client.inference(function_name="story", variant_name=variant, input=point["input"])
                output = [block.model_dump(mode="json") for block in response.content]
                scores = {
                    "matches": exact_match(point["output"], output),
                    "thunderous": "thunderous" in output_text(output),
                }
                for name, value in scores.items():
                    client.feedback(
                        metric_name=f"tensorzero::function_name::story::evaluator_name::{name}",
                        value=value,
                        inference_id=str(response.inference_id),
                    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datapoints", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-evaluations-"))
    config = workdir / "tensorzero.toml"
    config.write_text(textwrap.dedent(CONFIG))
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    up = [sys.executable, "-m", "tensorzero_ray.cli", "up", "--config", str(config), "--port", str(port)]
    subprocess.run(up, cwd=workdir, check=True, stdout=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        points = seed(url, "bench", args.datapoints)
        evaluated = len(points) * len(VARIANTS)
        swept_s = sweep(url, config, "bench", args.workers, args.concurrency)
        loop_s = one_at_a_time(url, points)
    finally:
        subprocess.run([sys.executable, "-m", "tensorzero_ray.cli", "down"], cwd=workdir, stdout=subprocess.DEVNULL)
    result = {
        "datapoints": len(points),
        "variants": len(VARIANTS),
        "workers": args.workers,
        "concurrency": args.concurrency,
        "sweep_s": round(swept_s, 1),
        "loop_s": round(loop_s, 1),
        "sweep_per_s": round(evaluated / swept_s, 1),
        "loop_per_s": round(evaluated / loop_s, 1),
    }
    result["ratio"] = round(result["sweep_per_s"] / result["loop_per_s"], 2)
    print(
        f"{evaluated} datapoint evaluations ({len(points)} datapoints x {len(VARIANTS)} variants, 2 evaluators)\n"
        f"  ray job sweep ({args.workers} workers x {args.concurrency}): {result['sweep_per_s']}/s ({result['sweep_s']} s,"
        " job start-up included)\n"
        f"  one at a time with the client:  {result['loop_per_s']}/s ({result['loop_s']} s)\n"
        f"  ratio: {result['ratio']}x"
    )
    out = ROOT / "bench" / "results" / f"evaluations-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
