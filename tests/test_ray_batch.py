"""The Ray-native batch: a file of `/inference` bodies run through the stack's gateway as a
real `ray job submit`, results in input order, a failing line reported without stopping the
rest, every inference stored with the run's tag. The file is checked before anything runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tensorzero_ray.inference.ray_batch import InputError, read_requests


def chat(n: int) -> dict:
    return {"input": {"system": {"assistant_name": "Ada"}, "messages": [{"role": "user", "content": f"batch {n}"}]}}


def test_a_file_of_requests_runs_as_a_ray_job_and_is_stored(serve_url, tmp_path):
    lines = [chat(n) for n in range(30)]
    lines[7] = {**chat(7), "variant_name": "no_such_variant"}
    lines.append({"model_name": "dummy::json", "input": {"messages": [{"role": "user", "content": "hi"}]}})
    requests = tmp_path / "requests.jsonl"
    requests.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", "http://127.0.0.1:8265", "--",
            "python", "jobs/batch_inference.py", "--input", str(requests), "--gateway-url", serve_url,
            "--function-name", "chat", "--workers", "2", "--concurrency", "4", "--shard-size", "8",
        ],
        capture_output=True, text=True, timeout=300, env={**os.environ, "RAY_AUTH_MODE": "token"},
    )  # fmt: skip
    log = done.stdout + done.stderr
    assert "31 inferences: 30 succeeded, 1 failed" in log, log[-4000:]
    assert "line 8: 404 Unknown variant: no_such_variant" in log
    assert "31/31" in log  # the progress bar finished
    results = [json.loads(line) for line in (tmp_path / "requests.results.jsonl").read_text().splitlines()]
    assert [r["index"] for r in results] == list(range(31))
    assert results[7]["status"] == 404 and "status" in results[0]
    assert all(r["status"] == 200 for i, r in enumerate(results) if i != 7)
    assert results[30]["response"]["content"][0]["text"] == '{"answer":"Hello"}'
    run_tag = re.search(r"batch_run=([0-9a-f-]+)", log).group(1)
    expected = {r["response"]["inference_id"] for i, r in enumerate(results) if i not in (7, 30)}
    query = {"function_name": "chat", "limit": 100,
             "filters": {"type": "tag", "key": "batch_run", "value": run_tag, "comparison_operator": "="}}  # fmt: skip
    with httpx.Client(base_url=serve_url, timeout=60) as http:
        deadline = time.monotonic() + 30
        while True:
            stored = http.post("/v1/inferences/list_inferences", json=query)
            assert stored.status_code == 200, stored.text
            if {i["inference_id"] for i in stored.json()["inferences"]} == expected:
                break
            assert time.monotonic() < deadline, "the batch's inferences never reached ClickHouse"
            time.sleep(0.2)  # rows reach ClickHouse in the background; nothing to await from outside


@pytest.mark.parametrize(
    "content, problem",
    [
        ('{"input": {"messages": []}}\nnot json\n', "requests.jsonl:2: not JSON"),
        ('["a list"]\n', "requests.jsonl:1: each line must be an object with an `input`"),
        ('{"input": {"messages": []}, "stream": true}\n', "requests.jsonl:1: `stream` is not supported"),
        ("\n\n", "holds no requests"),
    ],
)
def test_a_bad_file_is_refused_naming_the_line(tmp_path, content, problem):
    path = tmp_path / "requests.jsonl"
    path.write_text(content)
    with pytest.raises(InputError, match=re.escape(problem)):
        read_requests(path, "chat", None, "tag")


def test_lines_without_a_target_need_a_function_name(tmp_path):
    path = tmp_path / "requests.jsonl"
    path.write_text('{"input": {"messages": []}}\n{"model_name": "dummy::good", "input": {"messages": []}}\n')
    with pytest.raises(InputError, match="no `function_name` or `model_name`, and no --function-name"):
        read_requests(path, None, None, "tag")
    first, second = read_requests(path, "chat", "baseline", "run-1")
    assert first == {"input": {"messages": []}, "function_name": "chat", "variant_name": "baseline",
                     "tags": {"batch_run": "run-1"}}  # fmt: skip
    assert "variant_name" not in second and second["tags"] == {"batch_run": "run-1"}
