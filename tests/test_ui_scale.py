"""The UI on 100,000 stored inferences: the inferences list and the function page render
within a generous bound. The seeding and timing run in bench/ui_pages.py (its own process,
for its own embedded store); the times are kept in bench/results/ui-pages-100k-last.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOUND_MS = 5000  # generous: the reference run on 2 cores is under 150 ms per page


def test_pages_stay_fast_on_100k_inferences():
    output = ROOT / "bench" / "results" / "ui-pages-100k-last.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "ui_pages.py"), "--inferences", "100000", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["inferences"] == 100_000
    pages = report["pages"]
    assert all(page["status"] == 200 for page in pages.values()), pages
    for name in ("inferences", "inferences, metric filter", "function", "home", "models", "episodes"):
        assert pages[name]["page_ms"] < BOUND_MS, (name, pages[name])
