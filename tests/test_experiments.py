"""Adaptive experiments end to end in one process: traffic through the gateway, feedback from a
simulated user who clearly prefers one variant, the experiment controller reading it from
ClickHouse and publishing states to the routers, until it stops with that winner. Episodes
keep their variant across the stop and across a restarted stack; an update that cannot reach
ClickHouse keeps the last state and says so."""

from __future__ import annotations

import asyncio
import textwrap

import httpx
import pytest

from tensorzero_ray.api.gateway import create_app
from tensorzero_ray.config import load_config
from tensorzero_ray.experimentation.controller import ExperimentController
from tensorzero_ray.functions.routers import LocalRouters
from tensorzero_ray.store.observability import ObservabilityClient, ObservabilityWriter, StorageSettings

CONFIG = """
[metrics.liked]
type = "boolean"
optimize = "max"
level = "inference"

[functions.pick]
type = "chat"
[functions.pick.variants.good]
type = "chat_completion"
model = "dummy::good"
[functions.pick.variants.bad]
type = "chat_completion"
model = "dummy::alternate"
[functions.pick.variants.spare]
type = "chat_completion"
model = "dummy::good"

[functions.pick.experimentation]
type = "adaptive"
candidate_variants = ["good", "bad"]
fallback_variants = ["spare"]
metric = "liked"
min_samples_per_variant = 5
delta = 0.05
update_period_s = 1
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("experiments") / "tensorzero.toml"
    path.write_text(textwrap.dedent(CONFIG))
    return load_config(str(path))


class Stack:
    """A gateway and its experiment controller over the session's ClickHouse."""

    def __init__(self, config, observability):
        self.controller = ExperimentController(config, observability, propagation_s=0)
        self.routers = LocalRouters(config, observability, experiments=self.controller)
        app = create_app(config, self.routers, observability, experiments=self.controller)
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")

    async def infer(self, episode_id: str | None = None) -> dict:
        body = {"function_name": "pick", "input": {"messages": [{"role": "user", "content": "Hi"}]}}
        if episode_id is not None:
            body["episode_id"] = episode_id
        response = await self.http.post("/inference", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    async def update(self, observability) -> dict:
        """One controller update on fresh data, and every router following it."""
        await observability.flush()
        await self.controller.update()
        published = (await self.http.get("/internal/experiments")).json()["experiments"]["pick"]
        for _ in range(1000):  # the routers' long poll answers on the next turns of the loop
            shown = (await self.http.get("/internal/functions/pick/variant_sampling_probabilities")).json()
            if shown["probabilities"] == published["probabilities"]:
                return published
            await asyncio.sleep(0)
        raise AssertionError(f"the routers never took the published state: {shown} vs {published}")

    async def close(self) -> None:
        await self.http.aclose()
        await self.routers.aclose()


def liked(variant: str, n: int) -> bool:
    """The simulated user: likes `good` 9 times in 10, `bad` 1 time in 10."""
    return (n % 10 != 0) if variant == "good" else (n % 10 == 0)


async def test_feedback_moves_traffic_to_the_better_variant_until_it_stops(config, observability):
    stack = Stack(config, observability)
    first = await stack.update(observability)
    assert first["state"] == {"type": "nursery_only", "variants": ["good", "bad"]}
    early: dict[str, str] = {}
    sent = 0
    state = first
    while state["state"]["type"] != "stopped":
        assert sent < 400, f"no winner after {sent} inferences: {state}"
        for _ in range(20):
            answer = await stack.infer()
            early.setdefault(answer["episode_id"], answer["variant_name"])
            feedback = {
                "metric_name": "liked",
                "inference_id": answer["inference_id"],
                "value": liked(answer["variant_name"], sent),
            }
            assert (await stack.http.post("/feedback", json=feedback)).status_code == 200
            sent += 1
        state = await stack.update(observability)
    assert state["state"] == {"type": "stopped", "winner_variant_name": "good"}
    assert state["probabilities"] == {"good": 1.0}
    assert set(early.values()) == {"good", "bad"}  # the nursery tried both

    # New episodes get the winner; episodes begun earlier keep the variant they began with.
    new = [(await stack.infer())["variant_name"] for _ in range(100)]
    assert new.count("good") >= 99
    samples = list(early.items())[:30]
    for episode_id, variant in samples:
        assert (await stack.infer(episode_id))["variant_name"] == variant
    await stack.close()

    # A restarted stack reads the stored states back: the same episodes, the same variants.
    restarted = Stack(config, observability)
    for episode_id, variant in samples:
        assert (await restarted.infer(episode_id))["variant_name"] == variant
    assert (await restarted.infer())["variant_name"] == "good"

    # Stored history: one row per update, ending with the winner.
    rows = await observability.query(
        "SELECT state, winner FROM AdaptiveExperimentState WHERE function_name = 'pick' ORDER BY computed_at"
    )
    assert len(rows) >= 3 and rows[-1]["winner"] == "good" and '"nursery_only"' in rows[0]["state"]
    await restarted.close()


async def test_an_update_that_cannot_reach_clickhouse_keeps_the_last_state(config, observability, tmp_path):
    stack = Stack(config, observability)
    good = await stack.update(observability)
    down = ObservabilityWriter(
        StorageSettings(
            dsn="http://127.0.0.1:9/default", spool_path=str(tmp_path / "spool" / "w.jsonl"), required=False
        )
    )
    stack.controller.observability = ObservabilityClient(down.settings, down)
    await stack.controller.update()
    status = (await stack.http.get("/internal/experiments")).json()["experiments"]["pick"]
    assert status["state"] == good["state"] and status["probabilities"] == good["probabilities"]
    assert "StoreUnavailable" in status["error"] or "Unreachable" in status["error"]
    assert status["age_s"] >= 0
    await stack.close()
    down.store.close()
