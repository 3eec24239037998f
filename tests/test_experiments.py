"""Adaptive experiments end to end in one process: traffic through the gateway, feedback from a
simulated user who clearly prefers one variant, the experiment controller reading it from
ClickHouse and publishing states to the routers, until it stops with that winner. Episodes
keep their variant across the stop and across a restarted stack; an update that cannot reach
ClickHouse keeps the last state and says so. The experiment report: means against what was
sent, anytime-valid intervals, CUPED, and the sample-ratio check."""

from __future__ import annotations

import asyncio
import textwrap

import httpx
import numpy as np
import pytest

from tensorzero_ray.api.gateway import create_app
from tensorzero_ray.config import load_config
from tensorzero_ray.experimentation.controller import ExperimentController, StateEntry
from tensorzero_ray.experimentation.feedback_statistics import arm_statistics
from tensorzero_ray.experimentation.follower import StateFollower
from tensorzero_ray.experimentation.report import experiment_report, sequence_half_width
from tensorzero_ray.experimentation.sampling import AdaptiveSampler
from tensorzero_ray.functions.routers import LocalRouters
from tensorzero_ray.store.observability import ObservabilityClient, ObservabilityWriter, StorageSettings
from tensorzero_ray.types.experiments import ExperimentReportRequest
from tensorzero_ray.ui.app import create_ui_app

CONFIG = """
[metrics.liked]
type = "boolean"
optimize = "max"
level = "inference"
[metrics.session_ok]
type = "boolean"
optimize = "max"
level = "episode"

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

[functions.pick.experimentation.namespaces.mobile]
type = "adaptive"
candidate_variants = ["bad", "good"]
metric = "liked"
min_samples_per_variant = 50
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

    async def infer(self, episode_id: str | None = None, namespace: str | None = None) -> dict:
        body = {"function_name": "pick", "input": {"messages": [{"role": "user", "content": "Hi"}]}}
        if episode_id is not None:
            body["episode_id"] = episode_id
        if namespace is not None:
            body["namespace"] = namespace
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
        "SELECT state, winner FROM AdaptiveExperimentState WHERE function_name = 'pick' AND namespace = '' "
        "ORDER BY computed_at"
    )
    assert len(rows) >= 3 and rows[-1]["winner"] == "good" and '"nursery_only"' in rows[0]["state"]

    # Assignments followed the probabilities in effect when each episode began.
    report = (await restarted.http.get("/internal/experiments/pick/report", params={"metric_name": "liked"})).json()
    assert not report["sample_ratio"]["mismatch"] and report["sample_ratio"]["p_value"] > 0.001
    assert {v["variant_name"] for v in report["variants"]} == {"good", "bad"}

    # The function page draws it: probabilities over time, the candidates, the winner, the report.
    ui = create_ui_app(config, observability, experiments=restarted.controller)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ui), base_url="http://localhost") as browser:
        page = (await browser.get("/observability/functions/pick")).text
    assert "Sampling probabilities over time" in page and "winner: good" in page
    assert "Stopping statistic" in page and "Report on liked" in page and "Sample ratio:" in page
    assert page.count("<polyline") >= 2  # one line per candidate
    await restarted.close()


async def test_episode_level_feedback_counts_each_single_variant_episode_once(config, observability):
    stack = Stack(config, observability)
    episodes: dict[str, str] = {}
    for _ in range(6):
        first = await stack.infer()
        again = await stack.infer(first["episode_id"])
        assert again["variant_name"] == first["variant_name"]
        episodes[first["episode_id"]] = first["variant_name"]
        feedback = {"metric_name": "session_ok", "episode_id": first["episode_id"], "value": True}
        assert (await stack.http.post("/feedback", json=feedback)).status_code == 200
    await observability.flush()
    found = await arm_statistics(
        observability.query, function_name="pick", metric_name="session_ok", metric=config.metrics["session_ok"],
        candidates=["good", "bad"], namespace=None, max_samples=1000,
    )  # fmt: skip
    per_variant = {name: list(episodes.values()).count(name) for name in set(episodes.values())}
    assert {a.variant: a.count for a in found} == per_variant and all(a.mean == 1.0 for a in found)
    report = (await stack.http.get("/internal/experiments/pick/report", params={"metric_name": "session_ok"})).json()
    assert {v["variant_name"]: v["units"] for v in report["variants"]} == per_variant
    await stack.close()


async def test_a_namespace_runs_its_own_experiment_on_its_own_traffic(config, observability):
    stack = Stack(config, observability)
    served = []
    for n in range(12):
        answer = await stack.infer(namespace="mobile")
        served.append(answer["variant_name"])
        feedback = {"metric_name": "liked", "inference_id": answer["inference_id"], "value": True}
        assert (await stack.http.post("/feedback", json=feedback)).status_code == 200
    await observability.flush()
    await stack.controller.update()
    states = (await stack.http.get("/internal/experiments")).json()["experiments"]
    mobile = states["pick::mobile"]
    # Still in its nursery (50 samples each): only the namespace's 12 inferences count.
    assert mobile["state"] == {"type": "nursery_only", "variants": ["bad", "good"]}
    counts = {a.variant: a.count for a in stack.controller.statuses[("pick", "mobile")].state.arms}
    assert counts == {name: served.count(name) for name in ("bad", "good")}
    shown = await stack.http.get(
        "/internal/functions/pick/variant_sampling_probabilities", params={"namespace": "mobile"}
    )
    assert shown.json()["probabilities"] == {"bad": 0.5, "good": 0.5}
    await stack.close()


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


REPORT_CONFIG = """
[metrics.score]
type = "float"
optimize = "max"
level = "inference"
[metrics.pre]
type = "float"
optimize = "max"
level = "inference"

[functions.compare]
type = "chat"
[functions.compare.variants.a]
type = "chat_completion"
model = "dummy::good"
[functions.compare.variants.b]
type = "chat_completion"
model = "dummy::alternate"
[functions.compare.experimentation]
type = "static"
candidate_variants = {{ a = {a}, b = {b} }}
"""


def report_config(tmp_path, a: float, b: float):
    path = tmp_path / f"report-{a}-{b}.toml"
    path.write_text(textwrap.dedent(REPORT_CONFIG).format(a=a, b=b))
    return load_config(str(path))


async def test_the_report_compares_variants_with_anytime_valid_intervals_and_cuped(observability, tmp_path):
    served = report_config(tmp_path, 1.0, 1.0)
    routers = LocalRouters(served, observability)
    app = create_app(served, routers, observability)
    sent: dict[str, list[tuple[float, float]]] = {"a": [], "b": []}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as http:
        for n in range(80):
            body = {"function_name": "compare", "input": {"messages": [{"role": "user", "content": "Hi"}]}}
            answer = (await http.post("/inference", json=body)).json()
            # A pre-period covariate that explains most of the score; b adds 0.5 on top.
            pre = (n * 37 % 11) / 2
            score = pre + (0.5 if answer["variant_name"] == "b" else 0.0) + (n % 3) * 0.1
            sent[answer["variant_name"]].append((pre, score))
            for metric, value in (("pre", pre), ("score", score)):
                feedback = {"metric_name": metric, "inference_id": answer["inference_id"], "value": value}
                assert (await http.post("/feedback", json=feedback)).status_code == 200
        await observability.flush()
        params = {"metric_name": "score", "covariate_metric": "pre", "alpha": "0.05", "tune_n": "100"}
        report = (await http.get("/internal/experiments/compare/report", params=params)).json()
        bad = await http.get("/internal/experiments/compare/report", params={"metric_name": "nope"})
        assert bad.status_code == 400 and "Unknown metric" in bad.json()["error"]
        wrong = await http.get("/internal/experiments/compare/report", params={"metric_name": "score", "alpha": "2"})
        assert wrong.status_code == 400 and "alpha" in wrong.json()["error"]
    await routers.aclose()

    by_name = {v["variant_name"]: v for v in report["variants"]}
    for name, pairs in sent.items():
        scores = [score for _, score in pairs]
        assert by_name[name]["units"] == len(scores)
        assert by_name[name]["mean"] == pytest.approx(sum(scores) / len(scores))
        fixed, sequence = by_name[name]["interval"], by_name[name]["sequence"]
        assert sequence["low"] < fixed["low"] and fixed["high"] < sequence["high"]  # valid at every look costs width
    assert report["cuped"]["variance_reduction"] > 0.8 and report["cuped"]["units_with_covariate"] == 80
    (comparison,) = report["comparisons"]
    assert comparison["baseline"] == "a" and comparison["verdict"] == "b is better than a"
    ratio = report["sample_ratio"]
    assert ratio["observed"] == {"a": len(sent["a"]), "b": len(sent["b"])} and not ratio["mismatch"]

    # The same traffic read against 9:1 weights (a config changed under a running stack): a mismatch.
    skewed = await experiment_report(
        report_config(tmp_path, 9.0, 1.0), observability.query, "compare",
        ExperimentReportRequest(metric_name="score"),
    )  # fmt: skip
    assert skewed.sample_ratio.mismatch and skewed.sample_ratio.p_value < 0.001
    assert skewed.sample_ratio.expected["a"] == pytest.approx(72.0) and skewed.cuped is None


def test_confidence_sequences_stay_valid_when_peeking_at_every_step():
    rng = np.random.default_rng(7)
    paths, steps, alpha = 400, 400, 0.05
    data = rng.normal(0.0, 1.0, size=(paths, steps))
    n = np.arange(1, steps + 1)
    means = np.cumsum(data, axis=1) / n
    squares = np.cumsum(data * data, axis=1)
    variance = np.maximum(squares - n * means**2, 1e-12) / np.maximum(n - 1, 1)
    stderr = np.sqrt(variance / n)
    looks = slice(9, None)  # from 10 units on
    sequence = np.vectorize(lambda se, k: sequence_half_width(se, int(k), alpha, 100))(stderr, n)
    ever_wrong = (np.abs(means) > sequence)[:, looks].any(axis=1).mean()
    naive_wrong = (np.abs(means) > 1.96 * stderr)[:, looks].any(axis=1).mean()
    assert ever_wrong <= alpha
    assert naive_wrong > 3 * alpha  # a fixed-n interval read at every step is wrong far more often


async def test_routers_keep_the_last_state_when_the_controller_dies():
    class Controller:
        """Publishes one state, then dies as a replica would (its calls fail)."""

        def __init__(self):
            self.calls = 0

        async def changes(self, since: int, timeout_s: float):
            self.calls += 1
            if self.calls == 1:
                return 1, [StateEntry("pick", "", 0, {"good": 0.9, "bad": 0.1})]
            raise ConnectionError("the controller's replica is gone")

    sampler = AdaptiveSampler(["good", "bad"], [])
    follower = StateFollower(Controller(), {("pick", ""): sampler})
    await follower.ready()
    assert sampler.probabilities() == {"good": 0.9, "bad": 0.1}
    for _ in range(50):  # the failing polls run on later turns of the loop
        await asyncio.sleep(0)
    assert sampler.probabilities() == {"good": 0.9, "bad": 0.1} and follower.synced
    await follower.aclose()
