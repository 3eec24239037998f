"""End to end through the real Ray Serve HTTP proxy: `tzray up` on the quickstart config, the
README's curl example, streaming, errors across deployment handles, fallback, disconnects."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from ray.serve import Application
from ray.serve.schema import ServeDeploySchema

from tensorzero_ray.config import load_config
from tensorzero_ray.experimentation.sampling import episode_draw
from tensorzero_ray.ids import uuid7
from tensorzero_ray.serve.app import build_app, build_application
from tests.conftest import copy_tracked, tzray

ROOT = Path(__file__).resolve().parent.parent
SYSTEM = {"assistant_name": "Alfred"}


def readme_example() -> dict:
    """The exact request body of the README's curl example."""
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("curl -s localhost:8000/inference"):
            words = shlex.split(line)
            return orjson.loads(words[words.index("-d") + 1])
    raise AssertionError("README has no curl example")


@pytest.fixture(scope="module")
def client(serve_url):
    with httpx.Client(base_url=serve_url, timeout=30) as c:
        yield c


def sse(text: str) -> list:
    frames = [f.removeprefix("data: ") for f in text.strip().split("\n\n")]
    assert frames[-1] == "[DONE]"
    return [orjson.loads(f) for f in frames[:-1]]


def test_readme_example(client):
    r = client.post("/inference", json=readme_example())
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"inference_id", "episode_id", "variant_name", "content", "usage", "finish_reason"}
    assert body["variant_name"] in {"baseline", "concise", "safe"}
    assert body["content"][0]["type"] == "text"
    assert r.headers["x-tensorzero-gateway-version"]


def test_streaming_through_the_proxy(client):
    with client.stream("POST", "/inference", json={**readme_example(), "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    chunks = sse(text)
    assert len(chunks) == 17
    assert chunks[-1]["usage"] == {"input_tokens": 10, "output_tokens": 16}


def test_json_function(client):
    r = client.post(
        "/inference",
        json={
            "function_name": "extract",
            "input": {
                "messages": [
                    {"role": "user", "content": [{"type": "template", "name": "user", "arguments": {"text": "hi"}}]}
                ]
            },
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["output"] == {"raw": '{"answer":"Hello"}', "parsed": {"answer": "Hello"}}


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        ({"function_name": "chat", "variant_name": "nope", "input": {"system": SYSTEM}}, 404, "Unknown variant: nope"),
        ({"function_name": "chat", "input": {"system": {"name": "x"}}}, 400, "Input validation failed"),
        ({"function_name": "missing", "input": {}}, 404, "Unknown function: missing"),
        (
            {"model_name": "dummy::error", "input": {"messages": [{"role": "user", "content": "x"}]}},
            500,
            "All model providers failed to infer with errors: dummy: Error sending request",
        ),
        (
            {"model_name": "dummy::error", "stream": True, "input": {"messages": [{"role": "user", "content": "x"}]}},
            500,
            "All model providers failed",
        ),
    ],
)
def test_errors_cross_the_deployment_handles_intact(client, body, status, fragment):
    r = client.post("/inference", json=body)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]


def test_failed_candidate_is_resampled(client):
    """`concise` runs on a model that fails every second call in each Gateway replica: its
    episode is answered by `baseline` on the failing calls, by `concise` on the others."""
    config = load_config(ROOT / "config" / "quickstart" / "tensorzero.toml")
    weights = config.functions["chat"].experimentation.candidate_variants
    threshold = weights["baseline"] / sum(weights.values())
    episode = next(e for e in iter(uuid7, None) if episode_draw("chat", e) >= threshold)
    names = set()
    for _ in range(12):
        response = client.post("/inference", json={**readme_example(), "episode_id": str(episode)})
        assert response.status_code == 200, response.text
        names.add(response.json()["variant_name"])
        if names == {"concise", "baseline"}:
            break
    assert names == {"concise", "baseline"}


def test_client_disconnect_mid_stream_leaves_the_server_healthy(client):
    with client.stream("POST", "/inference", json={**readme_example(), "stream": True}) as r:
        first = next(r.iter_lines())
        assert first.startswith("data: ")
    assert client.get("/health").status_code == 200
    assert client.post("/inference", json=readme_example()).status_code == 200


def test_serve_yaml_is_valid_and_builds_the_application():
    data = yaml.safe_load((ROOT / "deployments" / "quickstart.yaml").read_text())
    schema = ServeDeploySchema.model_validate(data)
    app_args = schema.applications[0].args
    assert re.match(r"tensorzero_ray\.serve\.app:build_app", schema.applications[0].import_path)
    app = build_app({**app_args, "config": str(ROOT / app_args["config"])})
    deployed = {d.name for d in _deployments(app)}
    assert deployed == {"Gateway", "ObservabilityWriter", "UI"}
    yaml_names = {d["name"] for d in data["applications"][0]["deployments"]}
    assert yaml_names <= deployed


def test_deployments_switch_gives_each_function_a_router():
    config = load_config(ROOT / "config" / "quickstart" / "tensorzero.toml")
    deployed = {d.name for d in _deployments(build_application(config, routers="deployments"))}
    assert deployed == {
        "Gateway",
        "FunctionRouter-chat",
        "FunctionRouter-extract",
        "FunctionRouter-weather",
        "FunctionRouter-tensorzero__default",
        "FunctionRouter-tensorzero__llm_judge__function_name__chat__helpful",  # the quickstart's LLM judge
        "ObservabilityWriter",
        "UI",
    }


def test_build_app_rejects_unknown_args():
    with pytest.raises(ValueError, match="unknown application args"):
        build_app({"config": "x", "replicas": 3})


def _deployments(app: Application) -> list:
    """Every deployment an application binds, found by walking the bound arguments."""
    found, stack = [], [app]
    while stack:
        deployment = stack.pop()._bound_deployment
        found.append(deployment)
        for value in [*deployment.init_args, *deployment.init_kwargs.values()]:
            items = value.values() if isinstance(value, dict) else [value]
            stack += [item for item in items if isinstance(item, Application)]
    return found


def test_inference_is_stored_and_takes_feedback(client):
    """The feedback lookup finds the inference in the writer's chDB, through its handle."""
    inference = client.post("/inference", json=readme_example()).json()
    r = client.post(
        "/feedback", json={"metric_name": "thumbs_up", "value": True, "inference_id": inference["inference_id"]}
    )
    assert r.status_code == 200, r.text
    r = client.post(
        "/feedback", json={"metric_name": "task_success", "value": True, "episode_id": inference["episode_id"]}
    )
    assert r.status_code == 200, r.text
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["clickhouse"] == "ok"


ROUTED = textwrap.dedent("""
    import ray
    from ray import serve
    from tensorzero_ray.config import load_config
    from tensorzero_ray.serve.app import build_application

    config = load_config("config/quickstart/tensorzero.toml")
    config.gateway.observability.enabled = False  # the main app's writer owns the chDB engine
    ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
    serve.run(build_application(config, routers="deployments"), name="routed", route_prefix="/routed")
""")


@pytest.fixture(scope="module")
def routed(serve_url, client):
    """A second application on the same cluster with one FunctionRouter deployment per
    function, so requests cross Serve handles between the gateway and the routers."""
    done = subprocess.run([sys.executable, "-c", ROUTED], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return "/routed"


def test_router_deployments_serve_requests_streams_and_errors(client, routed):
    r = client.post(f"{routed}/inference", json=readme_example())
    assert r.status_code == 200, r.text
    with client.stream("POST", f"{routed}/inference", json={**readme_example(), "stream": True}) as streamed:
        chunks = sse("".join(streamed.iter_text()))
    assert len(chunks) == 17
    r = client.post(f"{routed}/inference", json={**readme_example(), "variant_name": "nope"})
    assert r.status_code == 404 and r.json() == {"error": "Unknown variant: nope"}
    r = client.post(
        f"{routed}/inference",
        json={"model_name": "dummy::error", "stream": True, "input": {"messages": [{"role": "user", "content": "x"}]}},
    )
    assert r.status_code == 500 and "All model providers failed" in r.json()["error"]


def test_the_ray_head_tzray_starts_asks_for_its_token(tzray_up):
    _, output, _ = tzray_up
    if "Ray runs with token authentication" not in output:
        pytest.skip("the session joined a Ray cluster that `tzray up` did not start")
    token = (Path.home() / ".ray" / "auth_token").read_text().strip()
    assert token not in output
    dashboard = "http://127.0.0.1:8265/api/version"
    assert httpx.get(dashboard, timeout=10).status_code == 401
    assert httpx.get(dashboard, headers={"authorization": f"Bearer {token}"}, timeout=10).status_code == 200


def test_tzray_status_shows_replicas_their_nodes_and_storage(tzray_up):
    url, _, workdir = tzray_up
    shown = tzray("status", cwd=workdir)
    assert shown.returncode == 0, shown.stderr[-3000:]
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("application tensorzero: RUNNING on 1 node(s)")
    gateway = next(line for line in lines if line.strip().startswith("Gateway:"))
    assert re.search(r"replicas \d+ running; nodes [\d.]+ x\d+", gateway), gateway
    storage = next(line for line in lines if line.startswith("storage:"))
    assert re.match(
        r"storage: chdb:///\S+ \(ok\); one for the stack; the writer holds \d+ row\(s\) buffered, \d+ spooled",
        storage,
    ), storage


def test_the_writer_resource_must_exist_before_anything_is_deployed(tzray_up):
    url, _, workdir = tzray_up
    quickstart = ROOT / "config" / "quickstart" / "tensorzero.toml"
    refused = tzray("up", "--config", str(quickstart), "--address", "auto", "--writer-resource", "durable_disk",
                    cwd=workdir)  # fmt: skip
    assert refused.returncode == 2
    assert "no node of the Ray cluster offers the resource `durable_disk`" in refused.stderr
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200  # the running stack is untouched


def test_tzray_up_on_a_running_stack_redeploys_without_restarting_ray(tzray_up, tmp_path):
    """A changed config goes live with `tzray up` alone: Ray, its job history and the
    dashboard stay; the new variant answers."""
    url, _, workdir = tzray_up
    ray_cli = [sys.executable, "-m", "ray.scripts.scripts", "job"]
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    job = f"before-redeploy-{uuid7().hex[:8]}"
    done = subprocess.run(
        [*ray_cli, "submit", "--submission-id", job, "--address", "http://127.0.0.1:8265", "--", "python", "-c", "1"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    session = Path("/tmp/ray/session_latest").resolve()

    config = tmp_path / "config"
    copy_tracked(ROOT / "config" / "quickstart", config)
    (config / "redeployed.toml").write_text(
        '[functions.chat.variants.redeployed]\ntype = "chat_completion"\nmodel = "dummy::alternate"\n'
        'system_template = "functions/chat/system.minijinja"\n'
    )
    port = url.rsplit(":", 1)[1]
    again = tzray("up", "--config", str(config / "*.toml"), "--port", port, cwd=workdir)
    assert again.returncode == 0, again.stderr[-3000:]

    assert Path("/tmp/ray/session_latest").resolve() == session
    status = subprocess.run(
        [*ray_cli, "status", job, "--address", "http://127.0.0.1:8265"], capture_output=True, text=True, env=env
    )
    assert "succeeded" in (status.stdout + status.stderr).lower()
    body = {"function_name": "chat", "variant_name": "redeployed", "input": {"system": SYSTEM, "messages": []}}
    answer = httpx.post(f"{url}/inference", json=body, timeout=60)
    assert answer.status_code == 200 and answer.json()["variant_name"] == "redeployed", answer.text
