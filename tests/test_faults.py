"""Faults on the real Serve stack: replicas killed under steady traffic, then a graceful stop,
then the rows counted in the stack's own chDB. Every acknowledged inference and feedback is
stored exactly once; feedback sent right after its inference is never refused."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "config" / "quickstart" / "tensorzero.toml"
INPUT = {"system": {"assistant_name": "Ada"}, "messages": [{"role": "user", "content": "Hi"}]}

DEPLOY = textwrap.dedent("""
    import ray, sys
    from ray import serve
    from tensorzero_ray.config import load_config
    from tensorzero_ray.serve.app import build_application

    ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
    app = build_application(load_config(sys.argv[1]), workdir=sys.argv[2], gateway_replicas=2)
    serve.run(app, name="faults", route_prefix="/faults")
""")

DELETE = textwrap.dedent("""
    import ray
    from ray import serve
    ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
    serve.delete("faults")
""")

COUNT = textwrap.dedent("""
    import sys, orjson, clickhouse_connect
    client = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1])
    client.command("USE tensorzero")
    def ids(sql):
        return [row[0] for row in client.query(sql).result_rows]
    print(orjson.dumps({
        "inferences": [str(i) for i in ids("SELECT id FROM ChatInference")],
        "feedback": [str(i) for i in ids("SELECT id FROM BooleanMetricFeedback")],
    }).decode())
""")


def _run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _replicas(deployment: str) -> list:
    import ray
    from ray.util.state import list_actors

    if not ray.is_initialized():
        ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
    return list_actors(filters=[("class_name", "=", f"ServeReplica:faults:{deployment}"), ("state", "=", "ALIVE")])


def _kill(replica) -> None:
    import ray

    ray.kill(ray.get_actor(replica.name, namespace="serve"), no_restart=True)


@pytest.fixture(scope="module")
def faults_app(serve_url, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("faults")
    _run(DEPLOY, str(QUICKSTART), str(workdir))
    yield f"{serve_url}/faults", workdir
    _run(DELETE)


def test_killed_replicas_lose_no_acknowledged_row(faults_app):
    url, workdir = faults_app
    inferences: list[str] = []
    feedback: list[str] = []
    refused: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while not stop.is_set():
                try:
                    r = client.post("/inference", json={"function_name": "chat", "input": INPUT})
                    if r.status_code != 200:
                        continue
                    inference_id = r.json()["inference_id"]
                    inferences.append(inference_id)
                    f = client.post(
                        "/feedback", json={"metric_name": "thumbs_up", "value": True, "inference_id": inference_id}
                    )
                except httpx.HTTPError:
                    continue  # a connection to a killed replica: not acknowledged
                if f.status_code == 200:
                    feedback.append(f.json()["feedback_id"])
                elif f.status_code == 400:
                    refused.append(f.text)

    with ThreadPoolExecutor(4) as pool:
        workers = [pool.submit(traffic) for _ in range(4)]
        time.sleep(3)
        _kill(_replicas("ObservabilityWriter")[0])
        time.sleep(4)
        _kill(_replicas("Gateway")[0])
        time.sleep(4)
        stop.set()
        for worker in workers:
            worker.result()

    assert len(inferences) > 50 and len(feedback) > 50
    assert refused == []
    _run(DELETE)  # graceful: replicas drain and the writer flushes
    stored = orjson.loads(_run(COUNT, str(workdir / ".tensorzero" / "clickhouse")))
    assert sorted(stored["inferences"]) == sorted(set(stored["inferences"])), "duplicates stored"
    assert set(inferences) <= set(stored["inferences"])
    assert sorted(stored["feedback"]) == sorted(set(stored["feedback"]))
    assert set(feedback) <= set(stored["feedback"])


def test_feedback_right_after_each_inference_is_never_refused(serve_url):
    def one(_: int) -> tuple[int, float]:
        with httpx.Client(base_url=serve_url, timeout=30) as client:
            inference_id = client.post("/inference", json={"function_name": "chat", "input": INPUT}).json()[
                "inference_id"
            ]
            started = time.perf_counter()
            r = client.post("/feedback", json={"metric_name": "thumbs_up", "value": True, "inference_id": inference_id})
            return r.status_code, time.perf_counter() - started

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(300)))
    assert [status for status, _ in answers if status != 200] == []
