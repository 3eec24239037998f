"""An evaluation sweep as Ray users run it: `ray job submit -- python jobs/evaluate.py` against
the quickstart stack, two variants over one dataset on Ray workers, a side-by-side table and a
paired comparison in the job's log, scores stored as feedback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from tensorzero_ray.providers.dummy import MEGUMIN

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "config" / "quickstart" / "tensorzero.toml"


def test_a_sweep_of_two_variants_runs_as_a_ray_job(serve_url):
    dataset = f"sweep_{uuid.uuid4().hex[:8]}"
    references = [MEGUMIN] * 4 + ["Not what any variant says."] * 2
    points = [
        {
            "type": "chat",
            "function_name": "chat",
            "input": {"system": {"assistant_name": "Ada"}, "messages": [{"role": "user", "content": f"Q{n}"}]},
            "output": [{"type": "text", "text": reference}],
        }
        for n, reference in enumerate(references)
    ]
    with httpx.Client(base_url=serve_url, timeout=60) as http:
        assert http.post(f"/v1/datasets/{dataset}/datapoints", json={"datapoints": points}).status_code == 200
        deadline = time.monotonic() + 30
        while len(http.post(f"/v1/datasets/{dataset}/list_datapoints", json={"limit": 100}).json()["datapoints"]) < 6:
            assert time.monotonic() < deadline, "datapoints never became visible"
            time.sleep(0.2)  # stored rows reach ClickHouse in the background; nothing to await from outside

    ray_cli = str(Path(sys.executable).parent / "ray")
    done = subprocess.run(
        [
            ray_cli, "job", "submit", "--address", "http://127.0.0.1:8265", "--",
            "python", "jobs/evaluate.py", "--config-file", str(QUICKSTART), "--gateway-url", serve_url,
            "--function-name", "chat", "--evaluator-names", "exact,helpful", "--dataset-name", dataset,
            "--variants", "baseline,safe", "--workers", "2", "--concurrency", "4",
        ],
        capture_output=True, text=True, timeout=300, env={**os.environ, "RAY_AUTH_MODE": "token"},
    )  # fmt: skip
    log = done.stdout + done.stderr
    assert done.returncode == 0 and "succeeded" in done.stdout, log[-4000:]
    # baseline answers MEGUMIN (4 of 6 references), safe answers something else (0 of 6).
    assert "baseline     0.6667" in log and "safe         0.0000" in log, log[-3000:]
    assert "exact: safe:" in log and "baseline is better" in log
    assert "helpful: safe:" in log and "no significant difference" in log
    assert "evaluating: 100%" in log

    with httpx.Client(base_url=serve_url, timeout=60) as http:
        scored = {
            "type": "and",
            "children": [
                {"type": "tag", "key": "tensorzero::dataset_name", "value": dataset},
                {
                    "type": "boolean_metric",
                    "metric_name": "tensorzero::function_name::chat::evaluator_name::exact",
                    "value": True,
                },
            ],
        }
        deadline = time.monotonic() + 30
        while (
            len(
                http.post("/v1/inferences/list_inferences", json={"filters": scored, "limit": 100}).json()["inferences"]
            )
            < 4
        ):
            assert time.monotonic() < deadline, "the sweep's scores never became visible as feedback"
            time.sleep(0.2)  # stored rows reach ClickHouse in the background; nothing to await from outside

        def runs() -> list[tuple]:
            listed = http.get("/internal/evaluations/runs").json()["runs"]
            return sorted(
                (r["variant_name"], r["status"], r["num_datapoints"]) for r in listed if r["dataset_name"] == dataset
            )

        while runs() != [("baseline", "complete", 6), ("safe", "complete", 6)]:
            assert time.monotonic() < deadline, f"the sweep's runs were not recorded as complete: {runs()}"
            time.sleep(0.2)
