"""`GET /metrics` in Prometheus's text format, with TensorZero's metric names (spec §5.3).
The counts come from ClickHouse, where every replica's rows end up, so one scrape of any
replica sees the whole stack: counters only grow (rows are only added), and lag the requests
by the writer's flush interval. The writer's buffer and spool are gauges from this replica's
view of storage."""

from __future__ import annotations

from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from tensorzero_ray import telemetry

INFERENCES = """
SELECT function_name, variant_name, count() AS n FROM (
    SELECT function_name, variant_name FROM ChatInference
    UNION ALL SELECT function_name, variant_name FROM JsonInference)
GROUP BY function_name, variant_name ORDER BY function_name, variant_name"""

MODEL_INFERENCES = """
SELECT model_name, model_provider_name, count() AS n, sum(ifNull(input_tokens, 0)) AS input_tokens,
       sum(ifNull(output_tokens, 0)) AS output_tokens
FROM ModelInference GROUP BY model_name, model_provider_name ORDER BY model_name, model_provider_name"""

FEEDBACK = """
SELECT metric_name, count() AS n FROM (
    SELECT metric_name FROM BooleanMetricFeedback
    UNION ALL SELECT metric_name FROM FloatMetricFeedback
    UNION ALL SELECT 'comment' AS metric_name FROM CommentFeedback
    UNION ALL SELECT 'demonstration' AS metric_name FROM DemonstrationFeedback)
GROUP BY metric_name ORDER BY metric_name"""

LATENCY = """
SELECT function_name, variant_name, {buckets} AS buckets, count() AS n, sum(ifNull(processing_time_ms, 0)) AS total_ms
FROM (
    SELECT function_name, variant_name, processing_time_ms FROM ChatInference
    UNION ALL SELECT function_name, variant_name, processing_time_ms FROM JsonInference)
GROUP BY function_name, variant_name ORDER BY function_name, variant_name"""

# Whole-request latency buckets, in seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


async def prometheus_text(observability) -> bytes:
    """The exposition for one scrape (`observability` None: nothing is stored, no series)."""
    families: list[Any] = []
    if observability is not None:
        families += await _stored(observability)
        families += await _storage(observability)
    dropped = telemetry.dropped_spans()
    if dropped is not None:
        spans = CounterMetricFamily(
            "tensorzero_otlp_spans_dropped", "Trace spans this replica could not export (collector down)"
        )
        spans.add_metric([], dropped)
        families.append(spans)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    return generate_latest(registry)


async def _stored(observability) -> list[Any]:
    requests = CounterMetricFamily(
        "tensorzero_requests", "Requests stored, by endpoint", labels=["endpoint", "function_name", "metric_name"]
    )
    inferences = CounterMetricFamily(
        "tensorzero_inferences", "Inferences stored, by function and variant", labels=["function_name", "variant_name"]
    )
    by_function: dict[str, int] = {}
    for row in await observability.query(INFERENCES):
        inferences.add_metric([row["function_name"], row["variant_name"]], row["n"])
        by_function[row["function_name"]] = by_function.get(row["function_name"], 0) + row["n"]
    for function_name, n in sorted(by_function.items()):
        requests.add_metric(["inference", function_name, ""], n)
    for row in await observability.query(FEEDBACK):
        requests.add_metric(["feedback", "", row["metric_name"]], row["n"])

    model_calls = CounterMetricFamily(
        "tensorzero_model_inferences",
        "Model provider calls that answered, by model and provider",
        labels=["model_name", "provider_name"],
    )
    input_tokens = CounterMetricFamily("tensorzero_input_tokens", "Input tokens of every model inference")
    output_tokens = CounterMetricFamily("tensorzero_output_tokens", "Output tokens of every model inference")
    total_in = total_out = 0
    for row in await observability.query(MODEL_INFERENCES):
        model_calls.add_metric([row["model_name"], row["model_provider_name"]], row["n"])
        total_in += row["input_tokens"]
        total_out += row["output_tokens"]
    input_tokens.add_metric([], total_in)
    output_tokens.add_metric([], total_out)

    latency = HistogramMetricFamily(
        "tensorzero_inference_latency_seconds",
        "Time from request to answer, by function and variant",
        labels=["function_name", "variant_name"],
    )
    buckets = "[" + ", ".join(f"countIf(processing_time_ms <= {b * 1000:g})" for b in LATENCY_BUCKETS) + "]"
    for row in await observability.query(LATENCY.format(buckets=buckets)):
        cumulative = [(f"{b:g}", n) for b, n in zip(LATENCY_BUCKETS, row["buckets"])] + [("+Inf", row["n"])]
        latency.add_metric([row["function_name"], row["variant_name"]], cumulative, row["total_ms"] / 1000)
    return [requests, inferences, model_calls, input_tokens, output_tokens, latency]


async def _storage(observability) -> list[Any]:
    state = await observability.status()
    buffered = GaugeMetricFamily("tensorzero_writer_buffered_rows", "Rows acknowledged and not yet inserted")
    buffered.add_metric([], state.get("buffered_rows", 0))
    spooled = GaugeMetricFamily("tensorzero_writer_spooled_rows", "Rows spooled to disk while ClickHouse was away")
    spooled.add_metric([], state.get("spooled_rows", 0))
    up = GaugeMetricFamily("tensorzero_clickhouse_up", "1 when ClickHouse answers")
    up.add_metric([], 1 if state.get("clickhouse") == "ok" else 0)
    return [buffered, spooled, up]


class _Fixed:
    def __init__(self, families: list[Any]):
        self._families = families

    def collect(self):
        return iter(self._families)
