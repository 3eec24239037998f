"""Spreading a model's requests over its providers by weight or latency, and the circuit
breaker that leaves out a failing provider and lets it back once a probe succeeds."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections import Counter

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tensorzero_ray.api.gateway import create_app
from tensorzero_ray.config import load_config
from tensorzero_ray.config.models import ModelConfig
from tensorzero_ray.errors import AllModelProvidersFailed
from tensorzero_ray.functions.routers import LocalRouters
from tensorzero_ray.inference import provider_health
from tensorzero_ray.inference.model import Model, RequestExtras
from tensorzero_ray.inference.provider_health import ProviderHealth
from tensorzero_ray.types import Text
from tensorzero_ray.types.model import ModelInferenceRequest, RequestMessage
from tests.mocks.server import BackgroundServer


class Upstreams:
    """OpenAI-style chat completions under /<name>/chat/completions; each name can be made
    to fail or to answer slowly."""

    def __init__(self):
        self.calls: Counter[str] = Counter()
        self.failing: set[str] = set()
        self.rejecting: set[str] = set()
        self.delay_s: dict[str, float] = {}
        self.app = Starlette(routes=[Route("/{name}/chat/completions", self.complete, methods=["POST"])])

    async def complete(self, request: Request) -> JSONResponse:
        name = request.path_params["name"]
        self.calls[name] += 1
        await asyncio.sleep(self.delay_s.get(name, 0))
        if name in self.failing:
            return JSONResponse({"error": {"message": "upstream overloaded"}}, status_code=503)
        if name in self.rejecting:
            return JSONResponse({"error": {"message": "Unrecognized request argument: bogus"}}, status_code=400)
        message = {"role": "assistant", "content": f"from {name}"}
        return JSONResponse(
            {
                "id": "c",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 2},
            }
        )


@pytest.fixture(scope="module")
def upstreams():
    mock = Upstreams()
    with BackgroundServer(mock.app) as server:
        mock.url = server.url
        yield mock


@pytest.fixture(autouse=True)
def fresh_state(tmp_path, monkeypatch, upstreams):
    monkeypatch.setenv(provider_health.STATE_DIR_VARIABLE, str(tmp_path))
    upstreams.calls.clear()
    upstreams.failing.clear()
    upstreams.rejecting.clear()
    upstreams.delay_s.clear()
    provider_health._random.seed(7)


def model_config(upstreams, names: list[str], **settings) -> ModelConfig:
    providers = {
        n: {"type": "openai", "model_name": "m", "api_base": f"{upstreams.url}/{n}/", "api_key_location": "none"}
        for n in names
    }
    return ModelConfig.model_validate({"routing": names, "providers": providers, **settings})


REQUEST = ModelInferenceRequest(messages=[RequestMessage(role="user", content=[Text(text="Hi")])])


async def served_by(model: Model) -> str:
    result = await model.infer(REQUEST, RequestExtras())
    return result.model_provider_name


async def test_weights_spread_requests(upstreams):
    model = Model(
        "weighted", model_config(upstreams, ["a", "b"], load_balancing={"strategy": "weighted", "weights": {"a": 3}})
    )
    served = Counter([await served_by(model) for _ in range(400)])
    assert 0.65 < served["a"] / 400 < 0.85, served
    await model.aclose()


async def test_a_provider_of_weight_zero_is_only_a_fallback(upstreams):
    config = model_config(upstreams, ["a", "b"], load_balancing={"strategy": "weighted", "weights": {"a": 0}})
    model = Model("spare", config)
    assert {await served_by(model) for _ in range(30)} == {"b"}
    upstreams.failing.add("b")
    assert await served_by(model) == "a"
    await model.aclose()


async def test_latency_favours_the_faster_provider(upstreams):
    upstreams.delay_s.update({"fast": 0.002, "slow": 0.04})
    model = Model("latency", model_config(upstreams, ["slow", "fast"], load_balancing={"strategy": "latency"}))
    served = Counter([await served_by(model) for _ in range(80)])
    assert served["fast"] > 0.75 * 80, served
    assert served["slow"] >= 1, "the slower provider is still measured now and then"
    latencies = {s.name: s.latency_ms for s in model.health.states()}
    assert latencies["fast"] < latencies["slow"]
    await model.aclose()


async def test_a_failing_provider_is_cut_off_probed_and_let_back(upstreams):
    config = model_config(upstreams, ["flaky", "steady"], circuit_breaker={"failure_threshold": 3, "open_s": 0.3})
    model = Model("breaker", config)
    upstreams.failing.add("flaky")
    served = [await served_by(model) for _ in range(20)]
    assert served == ["steady"] * 20, "every request is answered, by the fallback"
    assert upstreams.calls["flaky"] == 3, "no call to the failing provider past the threshold"
    flaky = model.health.states()[0]
    assert (flaky.state, flaky.consecutive_failures) == ("open", 3)

    await asyncio.sleep(0.35)
    assert await served_by(model) == "steady"
    assert upstreams.calls["flaky"] == 4, "one probe after the open period; it failed, so it stays out"
    assert [await served_by(model) for _ in range(5)] == ["steady"] * 5
    assert upstreams.calls["flaky"] == 4

    upstreams.failing.clear()
    await asyncio.sleep(0.35)
    assert [await served_by(model) for _ in range(5)] == ["flaky"] * 5, "the probe succeeded: traffic is back"
    assert model.health.states()[0].state == "closed"
    await model.aclose()


async def test_client_errors_do_not_open_the_circuit(upstreams):
    model = Model("client-errors", model_config(upstreams, ["a"], circuit_breaker={"failure_threshold": 1}))
    upstreams.rejecting.add("a")
    for _ in range(3):
        with pytest.raises(AllModelProvidersFailed, match="Unrecognized request argument"):
            await model.infer(REQUEST, RequestExtras())
    assert upstreams.calls["a"] == 3, "a 400 is the request's fault, not the provider's"
    assert model.health.states()[0].state == "closed"
    await model.aclose()


async def test_failures_seen_by_one_process_cut_off_the_provider_in_another(upstreams, tmp_path):
    config = model_config(upstreams, ["flaky", "steady"], circuit_breaker={"failure_threshold": 2, "open_s": 60})
    model = Model("shared", config)
    other = textwrap.dedent(f"""
        import json
        from pathlib import Path
        from tensorzero_ray.config.models import ModelConfig
        from tensorzero_ray.inference.provider_health import ProviderHealth
        config = ModelConfig.model_validate(json.loads({config.model_dump_json()!r}))
        health = ProviderHealth("shared", config, Path({str(tmp_path)!r}))
        health.failed(0)
        health.failed(0)
        """)
    subprocess.run([sys.executable, "-c", other], check=True)
    assert await served_by(model) == "steady"
    assert upstreams.calls["flaky"] == 0
    await model.aclose()


async def test_status_and_config_show_the_health(upstreams, tmp_path):
    path = tmp_path / "tensorzero.toml"
    path.write_text(
        f"""
[models.balanced]
routing = ["a", "b"]
load_balancing = {{ strategy = "weighted", weights = {{ a = 2.0, b = 1.0 }} }}
circuit_breaker = {{ failure_threshold = 2, open_s = 60 }}
[models.balanced.providers.a]
type = "openai"
model_name = "m"
api_base = "{upstreams.url}/a/"
api_key_location = "none"
[models.balanced.providers.b]
type = "openai"
model_name = "m"
api_base = "{upstreams.url}/b/"
api_key_location = "none"
"""
    )
    config = load_config(path)
    health = ProviderHealth("balanced", config.models["balanced"])
    health.failed(1)
    health.failed(1)
    transport = httpx.ASGITransport(app=create_app(config, LocalRouters(config, None)))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        status = (await client.get("/status")).json()
    providers = {p["name"]: p for p in status["models"]["balanced"]["providers"]}
    assert status["models"]["balanced"]["strategy"] == "weighted"
    assert providers["a"]["state"] == "closed" and providers["a"]["weight"] == 2.0
    assert providers["b"]["state"] == "open" and providers["b"]["consecutive_failures"] == 2
    health.close()


def test_weights_must_name_routed_providers(upstreams):
    with pytest.raises(ValueError, match="names providers not in `routing`: c"):
        model_config(upstreams, ["a", "b"], load_balancing={"strategy": "weighted", "weights": {"c": 1}})
