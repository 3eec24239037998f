"""The UI's aggregate queries. Every page asks ClickHouse for counts, sums and quantiles per
group or time bucket; Python never loops over stored rows, so pages stay fast as data grows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from tensorzero_ray.config import Config
from tensorzero_ray.datasets.store_access import StoreAccess, read
from tensorzero_ray.statistics import Estimate, estimate, wilson
from tensorzero_ray.store.inference_queries import inference_table

# Bucket widths to choose from, so that a time range gets at most MAX_BUCKETS points.
BUCKETS_S = (1, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400)
MAX_BUCKETS = 60
LATENCY_QUANTILES = (0.5, 0.9, 0.99)


def bucket_seconds(first_s: float, last_s: float) -> int:
    span = max(last_s - first_s, 1)
    for width in BUCKETS_S:
        if span / width <= MAX_BUCKETS:
            return width
    return BUCKETS_S[-1]


def bucket_starts(span: tuple[float, float], width: int) -> list[float]:
    """Every bucket start from the first to the last, aligned as ClickHouse's
    toStartOfInterval aligns them (multiples of the width since the epoch)."""
    first = (int(span[0]) // width) * width
    last = (int(span[1]) // width) * width
    return [float(t) for t in range(first, last + 1, width)]


def zero_filled(points: list[tuple[float, float]], starts: list[float]) -> list[tuple[float, float]]:
    """Counts with the empty buckets as zero: a quiet spell shows as zero, never as a line
    drawn across it."""
    seen = dict(points)
    return [(t, seen.get(t, 0.0)) for t in starts]


def with_gaps(points: list[tuple[float, float]], starts: list[float]) -> list[tuple[float, float | None]]:
    """Measurements (a median latency) with the empty buckets as gaps: no data is not zero."""
    seen = dict(points)
    first, last = min(seen), max(seen)
    return [(t, seen.get(t)) for t in starts if first <= t <= last]


@dataclass
class MetricSeries:
    """Per variant: cumulative estimates at each bucket end, and the final estimate."""

    bucket_s: int
    points: dict[str, list[tuple[float, Estimate]]]
    final: dict[str, Estimate]


class UIQueries:
    def __init__(self, config: Config, store: StoreAccess | None):
        self.config = config
        self.store = store

    async def _rows(self, sql: str, params: dict | None = None) -> list[dict[str, Any]]:
        return await read(self.store, sql, params)

    async def overview(self) -> dict[str, Any]:
        rows = await self._rows(
            """SELECT
                (SELECT count() FROM ChatInference) AS chat_inferences,
                (SELECT count() FROM JsonInference) AS json_inferences,
                (SELECT uniqExact(episode_id_uint) FROM InferenceByEpisodeId) AS episodes,
                (SELECT count() FROM BooleanMetricFeedback) + (SELECT count() FROM FloatMetricFeedback)
                    AS metric_feedback,
                (SELECT count() FROM CommentFeedback) AS comments,
                (SELECT count() FROM DemonstrationFeedback) AS demonstrations,
                (SELECT count() FROM ModelInference) AS model_inferences,
                (SELECT sum(ifNull(input_tokens, 0)) + sum(ifNull(output_tokens, 0)) FROM ModelInference) AS tokens,
                (SELECT toFloat64(sum(ifNull(cost, 0))) FROM ModelInference) AS cost"""
        )
        return {key: (float(v) if key == "cost" else int(v)) for key, v in rows[0].items()}

    async def recent_feedback(self, limit: int = 8) -> list[dict[str, Any]]:
        rows = await self._rows(
            f"""SELECT * FROM (
                SELECT toString(id) AS feedback_id, toString(target_id) AS target, metric_name,
                       toString(value) AS value, '' AS target_type, toUInt128(id) AS k FROM BooleanMetricFeedback
                UNION ALL SELECT toString(id), toString(target_id), metric_name, toString(value), '', toUInt128(id)
                       FROM FloatMetricFeedback
                UNION ALL SELECT toString(id), toString(target_id), 'comment', value, toString(target_type),
                       toUInt128(id) FROM CommentFeedback
                UNION ALL SELECT toString(id), toString(inference_id), 'demonstration', value, 'inference',
                       toUInt128(id) FROM DemonstrationFeedback
            ) ORDER BY k DESC LIMIT {int(limit)}"""
        )
        for row in rows:
            # Metric feedback targets what the metric's level says; a metric since removed from
            # the config is looked up by id when followed.
            metric = self.config.metrics.get(row["metric_name"])
            row["target_type"] = row["target_type"] or (metric.level if metric is not None else "")
        return rows

    async def function_counts(self) -> dict[str, dict[str, int]]:
        """function -> variant -> inference count."""
        rows = await self._rows(
            "SELECT function_name, variant_name, count() AS n FROM InferenceById GROUP BY function_name, variant_name"
        )
        counts: dict[str, dict[str, int]] = {}
        for row in rows:
            counts.setdefault(row["function_name"], {})[row["variant_name"]] = int(row["n"])
        return counts

    async def _span(self, table: str, where: str, params: dict) -> tuple[float, float] | None:
        rows = await self._rows(
            f"SELECT toUnixTimestamp(min(timestamp)) AS a, toUnixTimestamp(max(timestamp)) AS b, count() AS n "
            f"FROM {table} WHERE {where}",
            params,
        )
        if not rows or int(rows[0]["n"]) == 0:
            return None
        return float(rows[0]["a"]), float(rows[0]["b"])

    async def variant_throughput(self, function_name: str) -> tuple[int, dict[str, list[tuple[float, float]]]]:
        table = inference_table(self.config, function_name)
        params = {"f": function_name}
        span = await self._span(table, "function_name = {f:String}", params)
        if span is None:
            return 0, {}
        width = bucket_seconds(*span)
        rows = await self._rows(
            f"SELECT toUnixTimestamp(toStartOfInterval(timestamp, INTERVAL {width} SECOND)) AS t, variant_name, "
            f"count() AS n FROM {table} WHERE function_name = {{f:String}} GROUP BY t, variant_name ORDER BY t",
            params,
        )
        series: dict[str, list[tuple[float, float]]] = {}
        for row in rows:
            series.setdefault(row["variant_name"], []).append((float(row["t"]), float(row["n"])))
        starts = bucket_starts(span, width)
        return width, {name: zero_filled(points, starts) for name, points in series.items()}

    async def token_usage(self, function_name: str) -> tuple[int, dict[str, list[tuple[float, float]]]]:
        params = {"f": function_name}
        span = await self._span("ModelInference", "function_name = {f:String}", params)
        if span is None:
            return 0, {}
        width = bucket_seconds(*span)
        rows = await self._rows(
            f"SELECT toUnixTimestamp(toStartOfInterval(timestamp, INTERVAL {width} SECOND)) AS t, "
            "sum(ifNull(input_tokens, 0)) AS i, sum(ifNull(output_tokens, 0)) AS o FROM ModelInference "
            "WHERE function_name = {f:String} GROUP BY t ORDER BY t",
            params,
        )
        starts = bucket_starts(span, width)
        return width, {
            "input tokens": zero_filled([(float(r["t"]), float(r["i"])) for r in rows], starts),
            "output tokens": zero_filled([(float(r["t"]), float(r["o"])) for r in rows], starts),
        }

    async def metric_feedback_counts(self, function_name: str) -> dict[str, int]:
        """How much metric feedback each metric has on this function's inferences and episodes."""
        table = inference_table(self.config, function_name)
        rows = await self._rows(
            f"""SELECT metric_name, count() AS n FROM (
                SELECT metric_name, target_id FROM BooleanMetricFeedback
                UNION ALL SELECT metric_name, target_id FROM FloatMetricFeedback
            ) WHERE target_id IN (SELECT id FROM {table} WHERE function_name = {{f:String}})
               OR target_id IN (SELECT uint_to_uuid(episode_id_uint) FROM InferenceByEpisodeId
                                WHERE function_name = {{f:String}})
            GROUP BY metric_name""",
            {"f": function_name},
        )
        return {row["metric_name"]: int(row["n"]) for row in rows}

    async def metric_by_variant(self, function_name: str, metric_name: str) -> MetricSeries | None:
        """Each variant's mean of the metric's latest value per target, cumulative over time,
        with 95% intervals. Episode-level metrics count episodes in which the function used
        exactly one variant (as TensorZero does)."""
        metric = self.config.metrics[metric_name]
        feedback_table = "BooleanMetricFeedback" if metric.type == "boolean" else "FloatMetricFeedback"
        latest = (
            f"SELECT target_id, toFloat64(argMax(value, toUInt128(id))) AS value FROM {feedback_table} "
            "WHERE metric_name = {m:String} GROUP BY target_id"
        )
        if metric.level == "inference":
            table = inference_table(self.config, function_name)
            targets = (
                f"SELECT id AS target, variant_name AS variant, timestamp AS ts FROM {table} "
                "WHERE function_name = {f:String}"
            )
        else:
            targets = (
                "SELECT uint_to_uuid(episode_id_uint) AS target, any(variant_name) AS variant, "
                "UUIDv7ToDateTime(uint_to_uuid(min(id_uint))) AS ts FROM InferenceByEpisodeId "
                "WHERE function_name = {f:String} GROUP BY episode_id_uint HAVING uniqExact(variant_name) = 1"
            )
        joined = (
            f"SELECT t.variant AS variant_name, t.ts AS timestamp, v.value AS value "
            f"FROM ({latest}) AS v INNER JOIN ({targets}) AS t ON t.target = v.target_id"
        )
        params = {"f": function_name, "m": metric_name}
        span = await self._span(f"({joined})", "1", params)
        if span is None:
            return None
        width = bucket_seconds(*span)
        rows = await self._rows(
            f"SELECT toUnixTimestamp(toStartOfInterval(timestamp, INTERVAL {width} SECOND)) AS t, variant_name, "
            f"count() AS n, sum(value) AS s, sum(value * value) AS ss FROM ({joined}) "
            "GROUP BY t, variant_name ORDER BY t",
            params,
        )
        running: dict[str, list[float]] = {}
        points: dict[str, list[tuple[float, Estimate]]] = {}
        for row in rows:
            total = running.setdefault(row["variant_name"], [0, 0.0, 0.0])
            total[0] += int(row["n"])
            total[1] += float(row["s"])
            total[2] += float(row["ss"])
            if metric.type == "boolean":
                found = wilson(int(total[0]), total[1])
            else:
                found = estimate(int(total[0]), total[1], total[2])
            if found is not None:
                points.setdefault(row["variant_name"], []).append((float(row["t"]) + width, found))
        final = {name: series[-1][1] for name, series in points.items()}
        return MetricSeries(width, points, final)

    async def variant_numbers(self, function_name: str) -> dict[str, dict[str, Any]]:
        """Per variant: inferences, latency quantiles, time to first token, tokens, cost."""
        table = inference_table(self.config, function_name)
        qs = ", ".join(str(q) for q in LATENCY_QUANTILES)
        rows = await self._rows(
            f"SELECT variant_name, count() AS n, quantiles({qs})(processing_time_ms) AS latency, "
            f"quantiles({qs})(ttft_ms) AS ttft, countIf(ttft_ms IS NOT NULL) AS streamed "
            f"FROM {table} WHERE function_name = {{f:String}} GROUP BY variant_name",
            {"f": function_name},
        )
        usage = await self._rows(
            "SELECT variant_name, sum(ifNull(input_tokens, 0)) AS input_tokens, "
            "sum(ifNull(output_tokens, 0)) AS output_tokens, toFloat64(sum(ifNull(cost, 0))) AS cost, "
            "count() AS model_inferences FROM ModelInference WHERE function_name = {f:String} GROUP BY variant_name",
            {"f": function_name},
        )
        by_variant = {row["variant_name"]: dict(row) for row in rows}
        for row in usage:
            by_variant.setdefault(row["variant_name"], {"variant_name": row["variant_name"], "n": 0}).update(row)
        return by_variant

    async def model_numbers(self) -> list[dict[str, Any]]:
        """Per model and provider: calls, tokens, cost, latency and TTFT quantiles, and the
        share of calls that failed."""
        qs = ", ".join(str(q) for q in LATENCY_QUANTILES)
        rows = await self._rows(
            f"SELECT model_name, model_provider_name, count() AS n, sum(ifNull(input_tokens, 0)) AS input_tokens, "
            f"sum(ifNull(output_tokens, 0)) AS output_tokens, toFloat64(sum(ifNull(cost, 0))) AS cost, "
            f"quantiles({qs})(response_time_ms) AS latency, quantiles({qs})(ttft_ms) AS ttft, "
            f"countIf(cached) AS cached FROM ModelInference GROUP BY model_name, model_provider_name "
            f"ORDER BY n DESC"
        )
        failures = await self._rows(
            "SELECT model_name, model_provider_name, count() AS failures FROM ModelProviderFailure "
            "GROUP BY model_name, model_provider_name"
        )
        by_key = {(r["model_name"], r["model_provider_name"]): r for r in rows}
        for failed in failures:
            key = (failed["model_name"], failed["model_provider_name"])
            if key not in by_key:
                by_key[key] = {**failed, "n": 0, "input_tokens": 0, "output_tokens": 0, "cost": 0.0,
                               "latency": [], "ttft": [], "cached": 0}  # fmt: skip
                rows.append(by_key[key])
            by_key[key]["failures"] = int(failed["failures"])
        for row in rows:
            row.setdefault("failures", 0)
            attempts = int(row["n"]) + row["failures"]
            row["error_rate"] = row["failures"] / attempts if attempts else 0.0
        return rows

    async def model_timeseries(self) -> tuple[int, dict[str, dict[str, list[tuple[float, float]]]]]:
        """Per model: requests, median latency and median time to first token per bucket."""
        span = await self._span("ModelInference", "1", {})
        if span is None:
            return 0, {}
        width = bucket_seconds(*span)
        rows = await self._rows(
            f"SELECT toUnixTimestamp(toStartOfInterval(timestamp, INTERVAL {width} SECOND)) AS t, model_name, "
            "count() AS n, quantile(0.5)(response_time_ms) AS p50, quantile(0.5)(ttft_ms) AS ttft "
            "FROM ModelInference GROUP BY t, model_name ORDER BY t"
        )
        out: dict[str, dict[str, list[tuple[float, float]]]] = {"requests": {}, "latency": {}, "ttft": {}, "errors": {}}
        failures = await self._rows(
            f"SELECT toUnixTimestamp(toStartOfInterval(timestamp, INTERVAL {width} SECOND)) AS t, model_name, "
            "count() AS n FROM ModelProviderFailure GROUP BY t, model_name ORDER BY t"
        )
        for row in failures:
            out["errors"].setdefault(row["model_name"], []).append((float(row["t"]), float(row["n"])))
        for row in rows:
            t = float(row["t"])
            out["requests"].setdefault(row["model_name"], []).append((t, float(row["n"])))
            if row["p50"] is not None:
                out["latency"].setdefault(row["model_name"], []).append((t, float(row["p50"])))
            if row["ttft"] is not None:
                out["ttft"].setdefault(row["model_name"], []).append((t, float(row["ttft"])))
        starts = bucket_starts(span, width)
        fill = {"requests": zero_filled, "errors": zero_filled, "latency": with_gaps, "ttft": with_gaps}
        return width, {
            key: {name: fill[key](points, starts) for name, points in by_model.items()} for key, by_model in out.items()
        }

    async def episodes(self, limit: int, offset: int) -> list[dict[str, Any]]:
        return await self._rows(
            "SELECT toString(uint_to_uuid(episode_id_uint)) AS episode_id, count() AS inferences, "
            "groupUniqArray(function_name) AS functions, toString(uint_to_uuid(min(id_uint))) AS first_id, "
            "toString(uint_to_uuid(max(id_uint))) AS last_id FROM InferenceByEpisodeId "
            f"GROUP BY episode_id_uint ORDER BY max(id_uint) DESC LIMIT {int(limit)} OFFSET {int(offset)}"
        )

    async def feedback_for(self, target_id: str) -> list[dict[str, Any]]:
        """Every feedback row on an inference or episode, newest first."""
        return await self._rows(
            """SELECT * FROM (
                SELECT toString(id) AS feedback_id, metric_name, toString(value) AS value, tags, toUInt128(id) AS k
                    FROM BooleanMetricFeedbackByTargetId WHERE target_id = {t:UUID}
                UNION ALL SELECT toString(id), metric_name, toString(value), tags, toUInt128(id)
                    FROM FloatMetricFeedbackByTargetId WHERE target_id = {t:UUID}
                UNION ALL SELECT toString(id), 'comment', value, tags, toUInt128(id)
                    FROM CommentFeedbackByTargetId WHERE target_id = {t:UUID}
                UNION ALL SELECT toString(id), 'demonstration', value, tags, toUInt128(id)
                    FROM DemonstrationFeedbackByInferenceId WHERE inference_id = {t:UUID}
            ) ORDER BY k DESC""",
            {"t": uuid.UUID(target_id)},
        )

    async def model_inferences(self, inference_id: str) -> list[dict[str, Any]]:
        return await self._rows(
            "SELECT toString(id) AS model_inference_id, model_name, model_provider_name, input_tokens, output_tokens, "
            "response_time_ms, ttft_ms, toFloat64(cost) AS cost, finish_reason, cached, system, input_messages, "
            "output, raw_request, raw_response FROM ModelInference WHERE inference_id = {i:UUID} "
            "ORDER BY toUInt128(id)",
            {"i": uuid.UUID(inference_id)},
        )

    async def kind_of(self, some_id: str) -> str | None:
        """What a UUID names: an inference, an episode or a datapoint (for the search box)."""
        value = uuid.UUID(some_id)
        rows = await self._rows(
            "SELECT (SELECT count() FROM InferenceById WHERE id_uint = toUInt128({v:UUID})) AS inference, "
            "(SELECT count() FROM InferenceByEpisodeId WHERE episode_id_uint = toUInt128({v:UUID})) AS episode",
            {"v": value},
        )
        if int(rows[0]["inference"]):
            return "inference"
        if int(rows[0]["episode"]):
            return "episode"
        return None
