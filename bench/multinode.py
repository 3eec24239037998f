"""Requests per second and CPU per request with the stack on one, two and three Ray nodes of
Ray's multi-node test cluster on this machine, in one run: the fast mock provider, one Gateway
replica per node (the writer on the head), an open-loop load at `--rate` for `--duration`
seconds through the head's proxy. Each node count runs in its own process (a process joins
one Ray cluster). Prints the rate held, latency, errors and CPU per request per node count,
and the ratios to one node. On one machine the nodes share its cores, so this shows what the
multi-node machinery costs, not what more machines buy. Not a pass/fail test.

    .venv/bin/python bench/multinode.py [--rate 80] [--duration 8] [--nodes 1,2,3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from loadgen import run as load  # noqa: E402
from run import busy_ticks, free_port  # noqa: E402
from stack import MOCK_FUNCTION  # noqa: E402

CONFIG = MOCK_FUNCTION
BODY = json.dumps({"function_name": "ask", "input": {"messages": [{"role": "user", "content": "hi"}]}}).encode()


def child(nodes: int, mock_port: int, rate: float, duration: float) -> dict:
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from tensorzero_ray.config import load_config
    from tensorzero_ray.serve.app import APP_NAME, build_application

    home = Path(tempfile.mkdtemp(prefix="bench-multinode-"))
    config = home / "tensorzero.toml"
    config.write_text(f'[clickhouse]\nurl = "chdb://{home / "db"}"\n' + CONFIG.format(port=mock_port))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"storage": 1},
                                                            "include_dashboard": False})  # fmt: skip
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    port = free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port, "location": "HeadOnly"})
        serve.run(build_application(load_config(str(config)), gateway_replicas=nodes, writer_resource="storage"),
                  name=APP_NAME, route_prefix="/")  # fmt: skip
        asyncio.run(load("127.0.0.1", port, "/inference", BODY, 20, 2))  # warm-up
        ticks = busy_ticks()
        result = asyncio.run(load("127.0.0.1", port, "/inference", BODY, rate, duration))
        ticks = busy_ticks() - ticks
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()
    ok = sum(s.ok for s in result.samples)
    return {
        "nodes": nodes,
        "achieved_rate": round(result.achieved_rate, 1),
        "errors": result.errors,
        "p50_ms": round((result.percentile(0.5) or 0) * 1000, 1),
        "p99_ms": round((result.percentile(0.99) or 0) * 1000, 1),
        "cpu_ms_per_request": round(ticks / 100 * 1000 / max(ok, 1), 2),  # 100 ticks per second
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=80)
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--nodes", default="1,2,3")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mock-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.mock_port, args.rate, args.duration)))
        return
    mock_port = free_port()
    mock = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "mock_provider.py"), "--port", str(mock_port)], stdout=subprocess.DEVNULL
    )
    rows = []
    try:
        for nodes in [int(n) for n in args.nodes.split(",")]:
            done = subprocess.run(
                [sys.executable, __file__, "--child", str(nodes), "--mock-port", str(mock_port), "--rate",
                 str(args.rate), "--duration", str(args.duration)],
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            if done.returncode != 0:
                raise SystemExit(done.stderr[-3000:])
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    finally:
        mock.terminate()
    base = rows[0]
    print(f"open loop at {args.rate:g}/s for {args.duration:g} s, one Gateway replica per node")
    for row in rows:
        print(
            f"  {row['nodes']} node(s): {row['achieved_rate']}/s held ({row['achieved_rate'] / base['achieved_rate']:.2f}x), "
            f"{row['errors']} errors, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
            f"{row['cpu_ms_per_request']} CPU ms/request ({row['cpu_ms_per_request'] / base['cpu_ms_per_request']:.2f}x)"
        )
    out = ROOT / "bench" / "results" / f"multinode-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"rate": args.rate, "duration": args.duration, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
