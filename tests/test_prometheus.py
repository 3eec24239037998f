"""`GET /metrics`: TensorZero's metric names in Prometheus's text format, parsed with the
Prometheus client's own parser, counting what two replicas stored."""

from __future__ import annotations

import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tensorzero_ray.api.gateway import create_app
from tensorzero_ray.functions.routers import LocalRouters
from tensorzero_ray.store.observability import ObservabilityClient
from tests.conftest import GATEWAY_ORIGIN


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(parsed: dict, name: str, **labels) -> float:
    return parsed.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
async def replicas(config, storage, writer):
    clients, routers = [], []
    for _ in range(2):
        observability = ObservabilityClient(storage, writer)
        router = LocalRouters(config, observability)
        routers.append(router)
        app = create_app(config, router, observability)
        clients.append(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=GATEWAY_ORIGIN))
    yield clients
    for client in clients:
        await client.aclose()
    for router in routers:
        await router.aclose()


async def test_metrics_count_what_every_replica_stored(replicas, writer):
    first, second = replicas
    await writer.flush()
    before = samples((await first.get("/metrics")).text)
    hello = {"messages": [{"role": "user", "content": "Hello"}]}
    ids = []
    for client in (first, second, second):
        answer = await client.post(
            "/inference", json={"model_name": "good", "input": hello, "tags": {"run": uuid.uuid4().hex}}
        )
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["inference_id"])
    feedback = await first.post("/feedback", json={"metric_name": "thumbs_up", "inference_id": ids[0], "value": True})
    assert feedback.status_code == 200, feedback.text
    await writer.flush()

    response = await second.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    after = samples(response.text)

    def grew(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    default = {"function_name": "tensorzero::default"}
    assert grew("tensorzero_inferences_total", **default, variant_name="good") == 3
    assert grew("tensorzero_requests_total", endpoint="inference", **default, metric_name="") == 3
    assert grew("tensorzero_requests_total", endpoint="feedback", function_name="", metric_name="thumbs_up") == 1
    assert grew("tensorzero_model_inferences_total", model_name="good", provider_name="dummy") == 3
    assert grew("tensorzero_input_tokens_total") == 3 * 10 and grew("tensorzero_output_tokens_total") > 0
    assert grew("tensorzero_inference_latency_seconds_count", **default, variant_name="good") == 3
    assert grew("tensorzero_inference_latency_seconds_bucket", **default, variant_name="good", le="+Inf") == 3
    assert value(after, "tensorzero_writer_buffered_rows") == 0
    assert value(after, "tensorzero_clickhouse_up") == 1


def test_the_series_reach_rays_own_metrics(tzray_up):
    """Each replica counts what it serves in Ray's metrics; the node's Prometheus endpoint
    (what Ray's dashboard reads) shows them as `ray_tensorzero_*`."""
    import subprocess
    import sys
    import time

    url = tzray_up[0]
    body = {
        "function_name": "chat",
        "input": {"system": {"assistant_name": "Ada"}, "messages": [{"role": "user", "content": "Hi"}]},
    }
    answer = httpx.post(f"{url}/inference", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    script = "import ray; ray.init(address='auto', logging_level='ERROR'); print(ray.nodes()[0]['MetricsExportPort'])"
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    port = int(found.stdout.strip().splitlines()[-1])
    deadline = time.monotonic() + 60
    while True:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        if "ray_tensorzero_inferences_total{" in text and 'function_name="chat"' in text:
            break
        assert time.monotonic() < deadline, "Ray never exported the tensorzero series"
        time.sleep(1)  # Ray exports on its own interval: nothing to await from outside
    parsed = samples(text)
    chat = [
        v
        for (name, labels), v in parsed.items()
        if name == "ray_tensorzero_inferences_total" and ("function_name", "chat") in labels
    ]
    assert sum(chat) >= 1
    assert any(name.startswith("ray_tensorzero_inference_latency_seconds") for name, _ in parsed)
