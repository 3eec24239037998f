"""The stack across three Ray nodes on this machine (Ray's multi-node test cluster): Gateway
replicas spread over the nodes, the writer on the node that offers the storage resource, and a
worker node killed under steady load. Only requests in flight when it died may fail; every
acknowledged inference is stored once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.mocks.server import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_a_worker_node_dies_under_load_and_no_acknowledged_row_is_lost(tmp_path):
    config = ROOT / "config" / "quickstart" / "tensorzero.toml"
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "multinode_stack.py"), str(config), str(free_port()), str(free_port())],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["nodes"] == 3 and seen["gateway_nodes"] >= 2 and seen["writer_on_head"], seen
    assert seen["before_kill"] > 0 and seen["acknowledged"] > seen["before_kill"], seen
    assert seen["failed"] <= 8 and seen["failed_late"] == 0, seen  # 4 senders, one request each in flight
    assert seen["stored"] == seen["acknowledged"] and seen["stored_twice"] == 0, seen
    assert seen["acknowledged"] <= seen["rows"] <= seen["acknowledged"] + seen["failed"], seen
    assert seen["feedback_status"] == 200, seen
