"""The function page's experiment panel: an adaptive experiment's sampling probabilities over
time, its nursery, each candidate's mean with interval, the stopping statistic and the winner,
how old the state is; and, for any experiment, the report (anytime-valid intervals, the sample
ratio check)."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from tensorzero_ray.config.functions import AdaptiveExperimentation
from tensorzero_ray.datasets.store_access import read
from tensorzero_ray.errors import TensorZeroError
from tensorzero_ray.experimentation.follower import ask
from tensorzero_ray.experimentation.report import experiment_report
from tensorzero_ray.statistics import estimate, wilson
from tensorzero_ray.types.experiments import ExperimentReportRequest
from tensorzero_ray.ui.charts import Series, line_chart

logger = logging.getLogger(__name__)

STATES_SQL = (
    "SELECT toUnixTimestamp64Milli(computed_at) AS at_ms, state, probabilities, arms, leader, stopping_statistic, "
    "threshold, winner FROM AdaptiveExperimentState WHERE function_name = {function:String} AND namespace = '' "
    "ORDER BY computed_at"
)


async def experiment_panel(state, function_name: str, function, chosen_metric: str | None, colors) -> dict | None:
    experimentation = function.experimentation
    if experimentation is None:
        return None
    adaptive = isinstance(experimentation, AdaptiveExperimentation)
    metric = experimentation.metric if adaptive else chosen_metric
    panel: dict[str, Any] = {"adaptive": adaptive, "metric": metric, "report": None, "report_error": None}
    if adaptive:
        panel.update(await _adaptive(state, function_name, experimentation, colors))
    if metric:
        try:
            panel["report"] = await experiment_report(
                state.config,
                lambda sql, params: read(state.observability, sql, params),
                function_name,
                ExperimentReportRequest(metric_name=metric),
            )
        except TensorZeroError as exc:
            panel["report_error"] = exc.message
    return panel


async def _adaptive(state, function_name: str, experimentation, colors) -> dict[str, Any]:
    rows = await read(state.observability, STATES_SQL, {"function": function_name})
    candidates = list(experimentation.candidate_variants)
    chart = line_chart(
        [Series(name, [(r["at_ms"] / 1000, r["probabilities"].get(name, 0.0)) for r in rows]) for name in candidates],
        title="Sampling probabilities over time (each controller update)",
        y_label="probability",
        colors=colors,
        y_range=(0.0, 1.0),
    )
    found: dict[str, Any] = {"chart": chart, "latest": None, "arms": [], "controller": None}
    if rows:
        latest = rows[-1]
        current = orjson.loads(latest["state"])
        nursery = set(current.get("variants") or current.get("nursery") or [])
        found["latest"] = {
            "type": current["type"],
            "winner": latest["winner"],
            "leader": latest["leader"],
            "statistic": latest["stopping_statistic"],
            "threshold": latest["threshold"],
            "age_s": time.time() - latest["at_ms"] / 1000,
            "probabilities": latest["probabilities"],
        }
        boolean = state.config.metrics[experimentation.metric].type == "boolean"
        for arm in orjson.loads(latest["arms"]):
            n, mean = arm["count"], arm["mean"]
            if not n:
                interval = None
            elif boolean:
                interval = wilson(n, round(mean * n))
            else:
                interval = estimate(n, mean * n, arm["variance"] * max(n - 1, 0) + n * mean * mean)
            found["arms"].append({**arm, "interval": interval, "nursery": arm["variant"] in nursery})
    if state.experiments is not None:
        try:
            found["controller"] = (await ask(state.experiments, "status")).get(function_name)
        except Exception as exc:  # noqa: BLE001 - the page still shows the stored history
            logger.warning("experiment controller unreachable from the UI: %s", exc)
            found["controller"] = {"error": f"the experiment controller is unreachable: {exc}", "age_s": None}
    return found
