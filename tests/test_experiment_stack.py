"""Adaptive experiments on the Ray stack: two Gateway replicas behind Serve's proxy, the
ExperimentController deployment updating every second from ClickHouse, a simulated user who
clearly prefers one variant. The experiment stops with that winner, new episodes get it, and
episodes keep their variant whichever replica answers. Also the bandit simulation as a real
`ray job submit`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx

from tests.conftest import delete_app, deploy_app
from tests.test_experiments import CONFIG, liked


def test_the_controller_stops_with_the_better_variant_across_two_gateway_replicas(serve_url, tmp_path):
    config = tmp_path / "tensorzero.toml"
    config.write_text(f'[clickhouse]\nurl = "chdb://{tmp_path / "db"}"\n' + textwrap.dedent(CONFIG))
    deploy_app(str(config), "adaptive", "/adaptive", serve_url, gateway_replicas=2)
    try:
        with httpx.Client(base_url=f"{serve_url}/adaptive", timeout=60) as http:

            def infer(episode_id: str | None = None) -> dict:
                body = {"function_name": "pick", "input": {"messages": [{"role": "user", "content": "Hi"}]}}
                if episode_id is not None:
                    body["episode_id"] = episode_id
                answer = http.post("/inference", json=body)
                assert answer.status_code == 200, answer.text
                return answer.json()

            early: dict[str, str] = {}
            sent = 0
            deadline = time.monotonic() + 180
            state = {}
            while state.get("type") != "stopped":
                assert time.monotonic() < deadline, f"no winner after {sent} inferences: {state}"
                for _ in range(20):
                    answer = infer()
                    early.setdefault(answer["episode_id"], answer["variant_name"])
                    value = liked(answer["variant_name"], sent)
                    feedback = {"metric_name": "liked", "inference_id": answer["inference_id"], "value": value}
                    assert http.post("/feedback", json=feedback).status_code == 200
                    sent += 1
                # The controller updates every second from what the writer has stored; there is
                # no event to await from outside the stack.
                time.sleep(0.5)
                state = http.get("/internal/experiments").json()["experiments"]["pick"]["state"] or {}
            assert state == {"type": "stopped", "winner_variant_name": "good"}
            assert set(early.values()) == {"good", "bad"}

            # Every replica has the winner within the propagation margin.
            time.sleep(2.5)
            new = [infer()["variant_name"] for _ in range(100)]
            assert new.count("good") >= 99, new
            shown = http.get("/internal/functions/pick/variant_sampling_probabilities").json()
            assert shown == {"probabilities": {"good": 1.0}}
            # Earlier episodes keep their variant, whichever of the two replicas answers.
            for episode_id, variant in list(early.items())[:15]:
                assert {infer(episode_id)["variant_name"] for _ in range(4)} == {variant}

        report = subprocess.run(
            [
                str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", "http://127.0.0.1:8265", "--",
                "python", "jobs/experiment_report.py", "--gateway-url", f"{serve_url}/adaptive", "--function", "pick",
                "--metric", "liked",
            ],
            capture_output=True, text=True, timeout=300, env={**os.environ, "RAY_AUTH_MODE": "token"},
        )  # fmt: skip
        log = report.stdout + report.stderr
        assert report.returncode == 0 and "succeeded" in report.stdout, log[-3000:]
        assert "bad - good" in log and "anytime-valid" in log and "sample ratio" in log and ": ok" in log
    finally:
        delete_app("adaptive")


def test_the_bandit_simulation_runs_as_a_ray_job(serve_url, tmp_path):
    out = tmp_path / "simulation"
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", "http://127.0.0.1:8265", "--",
            "python", "jobs/bandit_simulation.py", "--arms", "bernoulli:0.3,0.7", "--deltas", "0.05,0.2",
            "--replicates", "200", "--workers", "2", "--cpus-per-worker", "0.25", "--batch", "20",
            "--horizon", "4000", "--out", str(out),
        ],
        capture_output=True, text=True, timeout=300, env={**os.environ, "RAY_AUTH_MODE": "token"},
    )  # fmt: skip
    log = done.stdout + done.stderr
    assert done.returncode == 0 and "succeeded" in done.stdout, log[-4000:]
    results = json.loads((out / "results.json").read_text())
    assert [r["delta"] for r in results] == [0.05, 0.2] and all(r["runs"] == 200 for r in results)
    assert all(r["error_rate"] < r["delta"] and r["stopped_share"] == 1.0 for r in results)
    # A larger error budget stops sooner.
    assert results[1]["mean_samples"] <= results[0]["mean_samples"]
    assert "regret T&S" in log and "<svg" in (out / "report.html").read_text()

    too_big = subprocess.run(
        [
            str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", "http://127.0.0.1:8265", "--",
            "python", "jobs/bandit_simulation.py", "--arms", "bernoulli:0.3,0.7", "--workers", "64",
            "--cpus-per-worker", "1",
        ],
        capture_output=True, text=True, timeout=300, env={**os.environ, "RAY_AUTH_MODE": "token"},
    )  # fmt: skip
    assert too_big.returncode != 0
    assert "not enough CPUs for the simulation" in too_big.stdout + too_big.stderr
    assert "--workers or --cpus-per-worker" in too_big.stdout + too_big.stderr


def test_the_dicl_job_embeds_stored_inferences_on_ray_and_prints_the_variant(serve_url):
    with httpx.Client(base_url=serve_url, timeout=60) as http:
        for n in range(14):
            body = {"function_name": "chat", "input": {"system": {"assistant_name": "Ada"}, "messages": [
                {"role": "user", "content": f"dicl question {n}"}]}}  # fmt: skip
            assert http.post("/inference", json=body).status_code == 200
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", "http://127.0.0.1:8265", "--",
            "python", "jobs/dicl.py", "--gateway-url", serve_url, "--function-name", "chat",
            "--variant-name", "dicl_test", "--embedding-model", "dummy::embedder", "--model", "dummy::good",
            "--max-examples", "12", "--batch-size", "8", "--workers", "2", "--cpus-per-worker", "0.25",
        ],
        capture_output=True, text=True, timeout=300, env={**os.environ, "RAY_AUTH_MODE": "token"},
    )  # fmt: skip
    log = done.stdout + done.stderr
    assert done.returncode == 0 and "succeeded" in done.stdout, log[-4000:]
    assert "wrote 12 examples of `chat` for variant `dicl_test` (1536-dimensional" in log, log[-3000:]
    assert '[functions.chat.variants.dicl_test]\ntype = "experimental_dynamic_in_context_learning"' in log
    assert "embedded 2/2 batches" in log
    with httpx.Client(base_url=serve_url, timeout=60) as http:
        deadline = time.monotonic() + 30
        params = {"function_name": "chat", "variant_name": "dicl_test"}
        while http.get("/internal/dicl/examples", params=params).json()["count"] < 12:
            assert time.monotonic() < deadline, "the examples never reached ClickHouse"
            time.sleep(0.2)  # rows reach ClickHouse in the background; nothing to await from outside
