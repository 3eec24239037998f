"""The stack across three Ray nodes on this machine (Ray's multi-node test cluster): Gateway
replicas spread over the nodes, the writer on the node that offers the storage resource (or
with a ClickHouse server, a writer in every replica), and a worker node killed under steady load. Only requests in flight when it died may fail; every
acknowledged inference is stored once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.mocks.clickhouse_server import ClickHouseServer
from tests.mocks.server import free_port

ROOT = Path(__file__).resolve().parent.parent


def run_stack(tmp_path: Path, *server_dsn: str) -> dict:
    config = ROOT / "config" / "quickstart" / "tensorzero.toml"
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "multinode_stack.py"), str(config), str(free_port()), str(free_port()),
         *server_dsn],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def assert_no_acknowledged_row_lost(seen: dict) -> None:
    assert seen["before_kill"] > 0 and seen["acknowledged"] > seen["before_kill"], seen
    assert seen["failed"] <= 8 and seen["failed_late"] == 0, seen  # 4 senders, one request each in flight
    assert seen["stored"] == seen["acknowledged"] and seen["stored_twice"] == 0, seen
    assert seen["acknowledged"] <= seen["rows"] <= seen["acknowledged"] + seen["failed"], seen
    assert seen["feedback_status"] == 200, seen


def test_a_worker_node_dies_under_load_and_no_acknowledged_row_is_lost(tmp_path):
    seen = run_stack(tmp_path)
    assert seen["nodes"] == 3 and seen["gateway_nodes"] >= 2 and seen["writer_on_head"], seen
    assert_no_acknowledged_row_lost(seen)


def test_with_a_clickhouse_server_every_replica_writes_and_a_lost_node_loses_nothing(tmp_path):
    """No writer deployment: nothing on the hot path depends on one node. The dead node's
    replica left its journal on this machine's disk, which the other nodes share here, so a
    writer on another node finishes it (on separate machines, when the node returns)."""
    server = ClickHouseServer(tmp_path / "clickhouse").start()
    try:
        seen = run_stack(tmp_path, server.dsn("multinode"))
    finally:
        server.stop()
    assert seen["nodes"] == 3 and seen["gateway_nodes"] >= 2 and not seen["writer_deployed"], seen
    assert_no_acknowledged_row_lost(seen)
    assert seen["status_storage"].startswith("storage: http://default:***@127.0.0.1:"), seen
    assert "(ok); one per replica; one Gateway replica holds" in seen["status_storage"]
