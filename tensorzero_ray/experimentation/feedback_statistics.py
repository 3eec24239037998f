"""Per-variant feedback statistics for an adaptive experiment, read from ClickHouse (spec
§8.2): mean, sample variance and count over each candidate's latest feedback on the metric."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tensorzero_ray.config.functions import MetricConfig
from tensorzero_ray.experimentation.track_and_stop import ArmStatistics

Query = Callable[[str, dict], Awaitable[list[dict[str, Any]]]]

NAMESPACE_FILTER = (
    "AND id_uint IN (SELECT toUInt128(inference_id) FROM InferenceTag WHERE function_name = {function:String} "
    "AND key = 'tensorzero::namespace' AND value = {namespace:String}) "
)
INFERENCE_TARGETS = (
    "SELECT id_uint AS target, variant_name FROM InferenceById WHERE function_name = {function:String} "
    "{namespace_filter}"
)
# Episode-level feedback counts only for episodes that stayed on one variant of the function.
EPISODE_TARGETS = (
    "SELECT target, only AS variant_name FROM (SELECT episode_id_uint AS target, any(variant_name) AS only, "
    "uniqExact(variant_name) AS used FROM InferenceByEpisodeId WHERE function_name = {function:String} "
    "{namespace_filter}GROUP BY episode_id_uint) WHERE used = 1"
)
# One value per target (the latest feedback wins), then each candidate's latest targets.
STATISTICS_SQL = """
SELECT variant_name AS variant, count() AS count, avg(v) AS mean, if(count() > 1, varSamp(v), 0) AS variance
FROM (
    SELECT t.variant_name AS variant_name, f.v AS v,
           row_number() OVER (PARTITION BY t.variant_name ORDER BY f.feedback DESC) AS recency
    FROM (
        SELECT toUInt128(target_id) AS target, argMax(toFloat64(value), toUInt128(id)) AS v,
               max(toUInt128(id)) AS feedback
        FROM {table} WHERE metric_name = {metric:String} GROUP BY target
    ) AS f
    INNER JOIN ({targets}) AS t ON f.target = t.target
    WHERE t.variant_name IN {candidates:Array(String)}
)
WHERE recency <= {max_samples:UInt32}
GROUP BY variant_name
"""


def targets_sql(level: str, namespace: str | None) -> str:
    """(target, variant_name) for a function's inferences or its single-variant episodes,
    within a namespace when one is given (parameters `function`, `namespace`)."""
    template = EPISODE_TARGETS if level == "episode" else INFERENCE_TARGETS
    return template.replace("{namespace_filter}", NAMESPACE_FILTER if namespace else "")


async def arm_statistics(
    query: Query,
    *,
    function_name: str,
    metric_name: str,
    metric: MetricConfig,
    candidates: list[str],
    namespace: str | None,
    max_samples: int,
) -> list[ArmStatistics]:
    targets = targets_sql(metric.level, namespace)
    table = "BooleanMetricFeedback" if metric.type == "boolean" else "FloatMetricFeedback"
    sql = STATISTICS_SQL.replace("{table}", table).replace("{targets}", targets)
    rows = await query(
        sql,
        {
            "function": function_name,
            "metric": metric_name,
            "candidates": candidates,
            "namespace": namespace or "",
            "max_samples": max_samples,
        },
    )
    return [ArmStatistics(r["variant"], int(r["count"]), float(r["mean"]), float(r["variance"])) for r in rows]
