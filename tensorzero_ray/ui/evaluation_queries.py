"""The evaluation pages' queries: runs, each run's statistics per evaluator from its stored
scores, and each datapoint's reference, outputs and scores side by side."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tensorzero_ray.datasets.store_access import StoreAccess, read
from tensorzero_ray.statistics import ScoreSummary, summarize

RUN_TAG = "tensorzero::evaluation_run_id"


@dataclass
class RunComparison:
    runs: list[dict[str, Any]]
    # metric -> run id -> summary
    statistics: dict[str, dict[str, ScoreSummary | None]]
    # datapoint id -> {"reference": ..., "runs": {run id: {"inference_id", "output", "scores": {metric: value}}}}
    datapoints: dict[str, dict[str, Any]]


class EvaluationQueries:
    def __init__(self, store: StoreAccess | None):
        self.store = store

    async def runs(self, limit: int = 100) -> list[dict[str, Any]]:
        return await read(
            self.store,
            "SELECT toString(uint_to_uuid(r.run_id_uint)) AS run_id, r.evaluation_name, r.function_name, "
            "r.function_type, r.dataset_name, r.variant_names, r.source, r.created_at, r.metrics, "
            "r.num_datapoints, r.status, ifNull(s.scored, 0) AS scored FROM (SELECT * FROM InferenceEvaluationRuns FINAL) AS r "
            "LEFT JOIN (SELECT tags['tensorzero::evaluation_run_id'] AS run, uniqExact(target_id) AS scored "
            "FROM (SELECT tags, target_id FROM BooleanMetricFeedback UNION ALL SELECT tags, target_id "
            "FROM FloatMetricFeedback) WHERE mapContains(tags, 'tensorzero::evaluation_run_id') GROUP BY run) AS s "
            "ON s.run = toString(uint_to_uuid(r.run_id_uint)) "
            f"ORDER BY r.run_id_uint DESC LIMIT {int(limit)}",
        )

    async def compare(self, run_ids: list[str]) -> RunComparison:
        runs = [
            row
            for row in await read(
                self.store,
                "SELECT toString(uint_to_uuid(run_id_uint)) AS run_id, evaluation_name, function_name, function_type, "
                "dataset_name, variant_names, source, created_at, metrics, num_datapoints, status "
                "FROM InferenceEvaluationRuns FINAL "
                "WHERE toString(uint_to_uuid(run_id_uint)) IN {ids:Array(String)}",
                {"ids": run_ids},
            )
        ]
        runs.sort(key=lambda r: run_ids.index(r["run_id"]))
        metrics = {m["name"]: m for run in runs for m in orjson.loads(run["metrics"])}
        scores = await read(
            self.store,
            "SELECT tags['tensorzero::evaluation_run_id'] AS run, metric_name, toString(target_id) AS inference_id, "
            "toFloat64(argMax(value, toUInt128(id))) AS value FROM ("
            "SELECT tags, metric_name, target_id, toFloat64(value) AS value, id FROM BooleanMetricFeedback "
            "UNION ALL SELECT tags, metric_name, target_id, value, id FROM FloatMetricFeedback) "
            "WHERE tags['tensorzero::evaluation_run_id'] IN {ids:Array(String)} "
            "GROUP BY run, metric_name, inference_id",
            {"ids": run_ids},
        )
        statistics: dict[str, dict[str, ScoreSummary | None]] = {name: {} for name in metrics}
        by_inference: dict[str, dict[str, float]] = {}
        for name in metrics:
            for run in runs:
                values = [s["value"] for s in scores if s["metric_name"] == name and s["run"] == run["run_id"]]
                boolean = metrics[name].get("value_type") == "boolean"
                statistics[name][run["run_id"]] = summarize(values, boolean)
        for s in scores:
            by_inference.setdefault(s["inference_id"], {})[s["metric_name"]] = s["value"]
        datapoints: dict[str, dict[str, Any]] = {}
        functions = sorted({run["function_name"] for run in runs})
        for table in ("ChatInference", "JsonInference"):
            # The evaluated function's inferences only: the judges' own carry the run's tags too.
            rows = await read(
                self.store,
                f"SELECT toString(id) AS inference_id, tags['tensorzero::datapoint_id'] AS datapoint_id, "
                f"tags['tensorzero::evaluation_run_id'] AS run, output FROM {table} "
                "WHERE tags['tensorzero::evaluation_run_id'] IN {ids:Array(String)} "
                "AND function_name IN {functions:Array(String)}",
                {"ids": run_ids, "functions": functions},
            )
            for row in rows:
                entry = datapoints.setdefault(row["datapoint_id"], {"reference": None, "runs": {}})
                entry["runs"][row["run"]] = {
                    "inference_id": row["inference_id"],
                    "output": orjson.loads(row["output"]),
                    "scores": by_inference.get(row["inference_id"], {}),
                }
        for table in ("ChatInferenceDatapoint", "JsonInferenceDatapoint"):
            refs = await read(
                self.store,
                f"SELECT toString(id) AS id, output FROM {table} FINAL WHERE toString(id) IN {{ids:Array(String)}}",
                {"ids": list(datapoints)},
            )
            for ref in refs:
                datapoints[ref["id"]]["reference"] = orjson.loads(ref["output"]) if ref["output"] else None
        return RunComparison(runs, statistics, datapoints)

    async def workflow_runs(self, limit: int = 100) -> list[dict[str, Any]]:
        return await read(
            self.store,
            "SELECT toString(uint_to_uuid(r.run_id_uint)) AS run_id, r.project_name, r.run_display_name, "
            "r.variant_pins, r.tags, ifNull(e.episodes, 0) AS episodes FROM (SELECT * FROM DynamicEvaluationRun FINAL) AS r "
            "LEFT JOIN (SELECT run_id, count() AS episodes FROM DynamicEvaluationRunEpisode FINAL GROUP BY run_id) AS e "
            "ON e.run_id = uint_to_uuid(r.run_id_uint) "
            f"ORDER BY r.project_name, r.run_id_uint DESC LIMIT {int(limit)}",
        )
