"""A three-node stack on one machine, run as its own process by tests/test_multinode.py (a
process joins one Ray cluster, and the test session has its own): Ray's multi-node test
cluster (three raylets), the application `tzray up` builds with three Gateway replicas and
the writer pinned by a resource to the head (or with a ClickHouse server DSN, no writer
deployment), steady load, and a worker node killed under it. Prints one JSON line with what happened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import httpx


def main(config_path: str, port: int, dashboard_port: int, server_dsn: str | None) -> None:
    """`server_dsn`: a ClickHouse server; every replica then writes for itself, and there is
    no writer to pin."""
    if server_dsn:
        os.environ["TENSORZERO_CLICKHOUSE_URL"] = server_dsn
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster
    from ray.util.state import list_actors

    from tensorzero_ray.config import load_config
    from tensorzero_ray.serve.app import APP_NAME, build_application

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "resources": {"tensorzero_storage": 1},
            "include_dashboard": True,
            "dashboard_port": dashboard_port,
        },  # fmt: skip
    )
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    out: dict = {"nodes": len([n for n in ray.nodes() if n["Alive"]])}
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port, "location": "HeadOnly"})
        application = build_application(
            load_config(config_path), gateway_replicas=3, writer_resource=None if server_dsn else "tensorzero_storage"
        )
        serve.run(application, name=APP_NAME, route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        head = cluster.head_node.node_id
        placed: dict[str, list[str]] = {}
        dashboard = f"http://127.0.0.1:{dashboard_port}"
        for actor in list_actors(address=dashboard, filters=[("state", "=", "ALIVE")], limit=10_000):
            if actor.class_name.startswith(f"ServeReplica:{APP_NAME}:"):
                placed.setdefault(actor.class_name.rsplit(":", 1)[1], []).append(actor.node_id)
        out["gateway_nodes"] = len(set(placed["Gateway"]))
        out["writer_on_head"] = placed.get("ObservabilityWriter") == [head]
        out["writer_deployed"] = "ObservabilityWriter" in placed
        victim = next(w for w in workers if w.node_id in placed["Gateway"])

        acknowledged: list[str] = []
        failures: list[float] = []
        stop = threading.Event()
        body = {"function_name": "chat", "input": {"system": {"assistant_name": "Ada"},
                                                   "messages": [{"role": "user", "content": "Hi"}]}}  # fmt: skip

        def steady() -> None:
            with httpx.Client(base_url=url, timeout=30) as http:
                while not stop.is_set():
                    try:
                        answer = http.post("/inference", json=body)
                    except httpx.HTTPError:
                        failures.append(time.monotonic())
                        continue
                    if answer.status_code == 200:
                        acknowledged.append(answer.json()["inference_id"])
                    else:
                        failures.append(time.monotonic())

        senders = [threading.Thread(target=steady) for _ in range(4)]
        for sender in senders:
            sender.start()
        time.sleep(4)  # steady load before the node goes: part of the scenario, not a wait for an event
        before = len(acknowledged)
        killed_at = time.monotonic()
        cluster.remove_node(victim, allow_graceful=False)
        time.sleep(8)  # steady load while Serve replaces the lost replica
        stop.set()
        for sender in senders:
            sender.join()
        out.update(before_kill=before, acknowledged=len(acknowledged), failed=len(failures),
                   failed_late=len([t for t in failures if t > killed_at + 5]))  # fmt: skip

        with httpx.Client(base_url=url, timeout=60) as http:
            feedback = http.post("/feedback", json={"metric_name": "thumbs_up", "value": True,
                                                    "inference_id": acknowledged[-1]})  # fmt: skip
            out["feedback_status"] = feedback.status_code
            writer = None if server_dsn else serve.get_deployment_handle("ObservabilityWriter", APP_NAME)
            deadline = time.monotonic() + 60
            while True:
                if writer is not None:
                    writer.flush.remote().result(timeout_s=60)
                answer = http.post("/v1/inferences/get_inferences", json={"ids": acknowledged})
                assert answer.status_code == 200, answer.text
                stored = answer.json()["inferences"]
                ids = [s["inference_id"] for s in stored]
                if len(set(ids)) == len(set(acknowledged)) or time.monotonic() > deadline:
                    break
                # The dead replica's outbox (or with a server, its writer's folder) is taken on
                # a writer's next retry pass; other replicas insert within their flush interval.
                time.sleep(0.5)
            # Every ChatInference row: acknowledged ones, plus any stored whose answer was lost.
            out["rows"] = http.post("/internal/inferences/count", json={"function_name": "chat"}).json()["count"]
        status = subprocess.run(
            [sys.executable, "-m", "tensorzero_ray.cli", "status", "--address", cluster.address],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        out["status_storage"] = next((line for line in status.stdout.splitlines() if line.startswith("storage:")), "")
        out["stored"] = len(set(ids))
        out["stored_twice"] = len(ids) - len(set(ids))
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None)
    sys.exit(0)
