"""Replay: stored inferences re-run on another variant or model, old and new side by side; a
dry run writes nothing, failed rows carry their error, and a large replay runs as a Ray job."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from tensorzero_ray.client import AsyncTensorZeroRayClient
from tensorzero_ray.providers.dummy import ALTERNATE

ROOT = Path(__file__).resolve().parent.parent
SYSTEM = {"assistant_name": "Alfred"}


async def ok(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


async def stored_count(observability, where: str = "1") -> int:
    await observability.flush()
    rows = await observability.query(f"SELECT count() AS n FROM ChatInference WHERE {where}")
    return int(rows[0]["n"])


@pytest.fixture(scope="module")
async def history(gateway, observability) -> dict:
    """A hundred stored inferences of `basic_test`, served by its `test` variant."""
    suite = uuid.uuid4().hex
    ids = []
    for n in range(100):
        body = {
            "function_name": "basic_test",
            "variant_name": "test",
            "input": {"system": SYSTEM, "messages": [{"role": "user", "content": f"Tell me about {n}"}]},
            "tags": {"suite": suite},
        }
        ids.append((await ok(await gateway.post("/inference", json=body)))["inference_id"])
    json_id = (
        await ok(
            await gateway.post(
                "/inference",
                json={
                    "function_name": "json_success",
                    "input": {"messages": [{"role": "user", "content": {"country": "Chile"}}]},
                },
            )
        )
    )["inference_id"]
    await observability.flush()
    return {"suite": suite, "ids": ids, "json_id": json_id}


def by_suite(history) -> dict:
    return {
        "function_name": "basic_test",
        "variant_name": "test",
        "filters": {"type": "tag", "key": "suite", "value": history["suite"]},
        "limit": 1000,
    }


async def test_a_dry_run_of_100_inferences_on_another_variant_writes_nothing(gateway, observability, history):
    before = await stored_count(observability)
    result = await ok(await gateway.post("/v1/replay", json={"query": by_suite(history), "variant_name": "echo"}))
    assert (result["total"], result["succeeded"], result["failed"], result["dryrun"]) == (100, 100, 0, True)
    assert sorted(c["inference_id"] for c in result["comparisons"]) == sorted(history["ids"])
    comparison = result["comparisons"][0]
    assert comparison["original"]["variant_name"] == "test" and "Megumin" in comparison["original"]["output"][0]["text"]
    replayed = comparison["replayed"]
    assert replayed["variant_name"] == "echo" and replayed["inference_id"] is None
    # The echo model answers with the messages it was sent: the stored input, rendered again.
    echoed = orjson.loads(replayed["output"][0]["text"])
    assert echoed["system"] == "You are a helpful and friendly assistant named Alfred"
    assert echoed["messages"][0]["content"][0]["text"] == comparison["input"]["messages"][0]["content"][0]["text"]
    assert await stored_count(observability) == before


async def test_replay_on_another_model_keeps_the_variants_templates(gateway, history):
    body = {"inference_ids": history["ids"][:3], "model_name": "dummy::alternate"}
    result = await ok(await gateway.post("/v1/replay", json=body))
    assert result["succeeded"] == 3
    for comparison in result["comparisons"]:
        assert comparison["replayed"]["variant_name"] == "test@dummy::alternate"
        assert comparison["replayed"]["output"] == [{"type": "text", "text": ALTERNATE}]


async def test_a_stored_replay_is_tagged_with_its_source(gateway, observability, history):
    source = history["ids"][0]
    result = await ok(
        await gateway.post("/v1/replay", json={"inference_ids": [source], "variant_name": "echo", "dryrun": False})
    )
    new_id = result["comparisons"][0]["replayed"]["inference_id"]
    assert new_id is not None
    await observability.flush()
    rows = await observability.query(
        "SELECT variant_name, tags FROM ChatInference WHERE id = {id:UUID}", {"id": uuid.UUID(new_id)}
    )
    assert rows[0]["variant_name"] == "echo" and rows[0]["tags"]["tensorzero::replay_of"] == source


async def test_failed_rows_carry_their_error_and_the_rest_finish(gateway, history):
    ids = [history["ids"][1], history["json_id"], history["ids"][2]]
    result = await ok(await gateway.post("/v1/replay", json={"inference_ids": ids, "variant_name": "echo"}))
    assert (result["succeeded"], result["failed"]) == (2, 1)
    failed = next(c for c in result["comparisons"] if c["error"])
    assert failed["inference_id"] == history["json_id"] and "Unknown variant" in failed["error"]
    assert failed["replayed"] is None


async def test_the_python_client_replays(gateway, history):
    async with AsyncTensorZeroRayClient(str(gateway.base_url), transport=gateway._transport) as client:
        found = await client.list_inferences(**by_suite(history))
        assert len(found) == 100
        result = await client.replay(inference_ids=[i.inference_id for i in found[:5]], variant_name="echo")
    assert result.succeeded == 5 and all(c.replayed.variant_name == "echo" for c in result.comparisons)


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        ({"variant_name": "echo"}, 400, "exactly one of `inference_ids` or `query`"),
        ({"inference_ids": [], "query": {}, "variant_name": "echo"}, 400, "exactly one of `inference_ids`"),
        ({"inference_ids": ["0196c682-72e0-7c83-a92b-9d1a3c7630f2"]}, 400, "`variant_name` or `model_name`"),
        (
            {"inference_ids": ["0196c682-72e0-7c83-a92b-9d1a3c7630f2"], "variant_name": "echo"},
            404,
            "Inferences not found",
        ),
        (
            {"inference_ids": ["0196c682-72e0-7c83-a92b-9d1a3c7630f2"], "model_name": "x", "dryrun": False},
            400,
            "dry run only",
        ),
        (
            {
                "query": {"filters": {"type": "boolean_metric", "metric_name": "nope", "value": True}},
                "variant_name": "echo",
            },
            400,
            "Unknown metric",
        ),
    ],
)
async def test_bad_replay_requests(gateway, body, status, fragment):
    r = await gateway.post("/v1/replay", json=body)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]


DYNAMIC = {
    "type": "chat_completion",
    "model": "dummy::alternate",
    "system_template": {"path": "inline", "contents": "Sir {{ assistant_name }}"},
}


async def test_dynamic_variants_are_dry_runs_or_internal_with_inline_templates(gateway):
    base = {"function_name": "basic_test", "input": {"system": SYSTEM, "messages": [{"role": "user", "content": "Hi"}]}}
    ran = await ok(
        await gateway.post(
            "/inference",
            json={**base, "dryrun": True, "internal_dynamic_variant_config": DYNAMIC, "variant_name": "trial"},
        )
    )
    assert ran["variant_name"] == "trial" and ran["content"] == [{"type": "text", "text": ALTERNATE}]
    stored = await gateway.post("/inference", json={**base, "internal_dynamic_variant_config": DYNAMIC})
    assert stored.status_code == 400 and "requires `dryrun: true`" in stored.json()["error"]
    # Our own optimizers run candidates as internal requests: stored, tagged as internal.
    internal = await ok(
        await gateway.post(
            "/inference",
            json={**base, "internal": True, "internal_dynamic_variant_config": DYNAMIC, "variant_name": "candidate"},
        )
    )
    found = await ok(await gateway.post("/v1/inferences/get_inferences", json={"ids": [internal["inference_id"]]}))
    [row] = found["inferences"]
    assert row["variant_name"] == "candidate" and row["tags"]["tensorzero::internal"] == "true"
    from_file = dict(DYNAMIC, system_template="/etc/passwd")
    refused = await gateway.post(
        "/inference", json={**base, "dryrun": True, "internal_dynamic_variant_config": from_file}
    )
    assert refused.status_code == 400 and "must be inline" in refused.json()["error"]


def test_a_large_replay_runs_as_a_ray_job(serve_url, tmp_path):
    """Seed the quickstart stack, then `ray job submit` the replay job against it."""
    suite = uuid.uuid4().hex
    with httpx.Client(base_url=serve_url, timeout=60) as http:
        for n in range(60):
            body = {
                "function_name": "chat",
                "input": {"system": {"assistant_name": "Ray"}, "messages": [{"role": "user", "content": f"#{n}"}]},
                "tags": {"suite": suite},
            }
            assert http.post("/inference", json=body).status_code == 200
        query = {"function_name": "chat", "filters": {"type": "tag", "key": "suite", "value": suite}, "limit": 1000}
        deadline = time.monotonic() + 30
        while len(http.post("/v1/inferences/list_inferences", json=query).json()["inferences"]) < 60:
            assert time.monotonic() < deadline, "the seeded inferences never became visible"
            time.sleep(0.2)  # the writer flushes once a second; nothing to await from here
        output = tmp_path / "replay.jsonl"
        # As the README writes it: the venv's `ray`, `python` as typed, from a shell whose PATH
        # lacks the venv (the job's `python` must still be the stack's interpreter).
        ray_cli = str(Path(sys.executable).parent / "ray")
        bare_path = os.pathsep.join(
            p for p in os.environ["PATH"].split(os.pathsep) if p != str(Path(sys.executable).parent)
        )
        submitted = subprocess.run(
            [
                ray_cli, "job", "submit",
                "--address", "http://127.0.0.1:8265",
                "--", "python", "jobs/replay.py",
                "--gateway", serve_url, "--function", "chat",
                "--filters", orjson.dumps(query["filters"]).decode(),
                "--variant", "safe", "--batch-size", "16", "--concurrency", "32", "--output", str(output),
            ],
            capture_output=True, text=True, timeout=300, env={**os.environ, "PATH": bare_path, "RAY_AUTH_MODE": "token"},
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
        assert "succeeded" in submitted.stdout and "replay: 100%" in submitted.stdout + submitted.stderr
        rows = [orjson.loads(line) for line in output.read_text().splitlines()]
        assert len(rows) == 60 and all(r["error"] is None for r in rows)
        assert {r["replayed"]["variant_name"] for r in rows} == {"safe"}
        after = http.post("/v1/inferences/list_inferences", json=query).json()["inferences"]
        assert len(after) == 60  # a dry run: nothing new stored
