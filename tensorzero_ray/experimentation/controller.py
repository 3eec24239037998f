"""The experiment controller: every `update_period_s` it reads each adaptive experiment's
feedback statistics from ClickHouse, computes the track-and-stop state, stores it, and
publishes the new sampling probabilities to every router (they long-poll `changes`).

Each published state takes effect a little later (`propagation_s`) than it is computed, so
it reaches every replica before any episode can be assigned with it. Routers choose an
episode's variant with the state in effect when the episode began (its UUIDv7 time) and the
episode's hash: the same answer on every replica and after a restart, with no lookup."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from tensorzero_ray.config.functions import AdaptiveExperimentation, MetricConfig
from tensorzero_ray.experimentation.feedback_statistics import arm_statistics
from tensorzero_ray.experimentation.track_and_stop import TrackAndStopSettings, TrackAndStopState, compute_state
from tensorzero_ray.store.rows import AdaptiveExperimentStateRow, clickhouse_time

logger = logging.getLogger(__name__)

PROPAGATION_S = 2.0
HISTORY_SQL = (
    "SELECT function_name, namespace, toUnixTimestamp64Milli(effective_from) AS effective_from_ms, probabilities "
    "FROM AdaptiveExperimentState ORDER BY effective_from"
)


@dataclass(frozen=True)
class Experiment:
    function_name: str
    # "" for the function's own experimentation, else the namespace's.
    namespace: str
    config: AdaptiveExperimentation
    metric: MetricConfig

    @property
    def key(self) -> tuple[str, str]:
        return self.function_name, self.namespace

    def settings(self) -> TrackAndStopSettings:
        return TrackAndStopSettings.from_config(self.config, maximize=self.metric.optimize == "max")


def adaptive_experiments(config) -> list[Experiment]:
    found = []
    for name, function in config.functions.items():
        experimentation = function.experimentation
        if experimentation is None:
            continue
        scopes = [("", experimentation), *experimentation.namespaces.items()]
        for namespace, scope in scopes:
            if isinstance(scope, AdaptiveExperimentation):
                found.append(Experiment(name, namespace, scope, config.metrics[scope.metric]))
    return found


@dataclass(frozen=True)
class StateEntry:
    function_name: str
    namespace: str
    effective_from_ms: int
    probabilities: dict[str, float]

    @property
    def key(self) -> tuple[str, str]:
        return self.function_name, self.namespace


@dataclass
class ExperimentStatus:
    state: TrackAndStopState | None = None
    updated_at_ms: int | None = None
    error: str | None = None


class ExperimentController:
    def __init__(self, config, observability, *, propagation_s: float = PROPAGATION_S):
        self.experiments = {e.key: e for e in adaptive_experiments(config)}
        self.observability = observability
        self.propagation_s = propagation_s
        self.entries: list[StateEntry] = []
        self.statuses = {key: ExperimentStatus() for key in self.experiments}
        self._changed = asyncio.Condition()
        self._started: asyncio.Future | None = None
        self._loop: asyncio.Task | None = None

    async def start(self) -> None:
        """Load the stored history once: episodes begun before a restart keep their variant."""
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            try:
                rows = await self.observability.query(HISTORY_SQL, {})
            except Exception as exc:  # noqa: BLE001 - no history is a degraded start, not a failed one
                logger.warning("could not read stored experiment states (%s); starting without history", exc)
                rows = []
            for row in rows:
                if (row["function_name"], row["namespace"]) in self.experiments:
                    self._append(StateEntry(row["function_name"], row["namespace"], int(row["effective_from_ms"]),
                                            dict(row["probabilities"])))  # fmt: skip
            self._started.set_result(None)
        await self._started

    def run_in_background(self) -> None:
        if self._loop is None and self.experiments:
            self._loop = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        await self.start()
        due = {key: 0.0 for key in self.experiments}
        while True:
            now = time.monotonic()
            for key in [k for k, at in due.items() if at <= now]:
                await self.update(key)
                due[key] = time.monotonic() + self.experiments[key].config.update_period_s
            await asyncio.sleep(max(0.05, min(due.values()) - time.monotonic()))

    async def update(self, key: tuple[str, str] | None = None) -> None:
        """Recompute one experiment (or all). If ClickHouse cannot answer, the last good state
        stays and the status says since when."""
        await self.start()
        for experiment in [self.experiments[key]] if key else list(self.experiments.values()):
            status = self.statuses[experiment.key]
            try:
                statistics = await arm_statistics(
                    self.observability.query,
                    function_name=experiment.function_name,
                    metric_name=experiment.config.metric,
                    metric=experiment.metric,
                    candidates=list(experiment.config.candidate_variants),
                    namespace=experiment.namespace or None,
                    max_samples=experiment.config.max_samples_per_variant,
                )
            except Exception as exc:  # noqa: BLE001 - keep serving the last good state
                status.error = f"{type(exc).__name__}: {exc}"
                logger.warning("experiment %s: update failed, keeping the last state: %s", experiment.key, exc)
                continue
            state = compute_state(experiment.settings(), statistics)
            computed_at = time.time()
            effective_from = computed_at + self.propagation_s
            status.state, status.updated_at_ms, status.error = state, int(computed_at * 1000), None
            await self._record(experiment, state, computed_at, effective_from)
            entry = StateEntry(*experiment.key, int(effective_from * 1000), state.probabilities())
            async with self._changed:
                if self._append(entry):
                    self._changed.notify_all()

    def _append(self, entry: StateEntry) -> bool:
        last = next((e for e in reversed(self.entries) if e.key == entry.key), None)
        if last is not None and _same(last.probabilities, entry.probabilities):
            return False
        self.entries.append(entry)
        return True

    async def _record(self, experiment: Experiment, state: TrackAndStopState, computed_at: float, effective: float):
        check = state.check
        row = AdaptiveExperimentStateRow(
            function_name=experiment.function_name,
            namespace=experiment.namespace,
            metric_name=experiment.config.metric,
            computed_at=clickhouse_time(computed_at),
            effective_from=clickhouse_time(effective),
            state=orjson.dumps(state.to_json()).decode(),
            probabilities=state.probabilities(),
            arms=orjson.dumps([asdict(a) for a in state.arms]).decode(),
            leader=check.leader if check else None,
            stopping_statistic=check.statistic if check and math.isfinite(check.statistic) else None,
            threshold=check.threshold if check else None,
            winner=state.winner,
        )
        try:
            await self.observability.record([row])
        except Exception as exc:  # noqa: BLE001 - the state still serves; only its history row is missing
            logger.warning("experiment %s: could not store the state: %s", experiment.key, exc)

    async def changes(self, since: int, timeout_s: float = 30.0) -> tuple[int, list[StateEntry]]:
        """Entries after `since`; waits up to `timeout_s` for one when there is none yet."""
        await self.start()
        self.run_in_background()
        if len(self.entries) <= since:
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait_for(lambda: len(self.entries) > since), timeout_s)
                except asyncio.TimeoutError:
                    pass
        return len(self.entries), self.entries[since:]

    async def status(self) -> dict[str, Any]:
        """Per experiment: the current state, when it was computed, and the last error."""
        now_ms = int(time.time() * 1000)
        found = {}
        for (function_name, namespace), status in self.statuses.items():
            state = status.state
            found[f"{function_name}::{namespace}" if namespace else function_name] = {
                "function_name": function_name,
                "namespace": namespace or None,
                "state": state.to_json() if state else None,
                "probabilities": state.probabilities() if state else None,
                "updated_at_ms": status.updated_at_ms,
                "age_s": (now_ms - status.updated_at_ms) / 1000 if status.updated_at_ms else None,
                "error": status.error,
            }
        return found

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-9 for k in a)
