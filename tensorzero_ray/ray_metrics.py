"""The `/metrics` series through Ray's own metrics (the dashboard and each node's Prometheus
endpoint, as `ray_tensorzero_*`): each Gateway or FunctionRouter replica counts what it
serves, and Prometheus sums the replicas. Off outside a Ray worker, where recording is a
no-op."""

from __future__ import annotations

from typing import Any

from tensorzero_ray.api.prometheus import LATENCY_BUCKETS

_metrics: dict[str, Any] = {}


def enable() -> None:
    """In a Serve replica: make the metrics (once per process)."""
    import ray

    if _metrics or not ray.is_initialized():
        return
    from ray.util.metrics import Counter, Histogram

    _metrics.update(
        requests=Counter(
            "tensorzero_requests", "Requests served", tag_keys=("endpoint", "function_name", "metric_name")
        ),
        inferences=Counter(
            "tensorzero_inferences",
            "Inferences served, by function and variant",
            tag_keys=("function_name", "variant_name"),
        ),
        model_inferences=Counter(
            "tensorzero_model_inferences",
            "Model provider calls that answered",
            tag_keys=("model_name", "provider_name"),
        ),
        input_tokens=Counter("tensorzero_input_tokens", "Input tokens of every model inference"),
        output_tokens=Counter("tensorzero_output_tokens", "Output tokens of every model inference"),
        latency=Histogram(
            "tensorzero_inference_latency_seconds",
            "Time from request to answer, by function and variant",
            boundaries=list(LATENCY_BUCKETS),
            tag_keys=("function_name", "variant_name"),
        ),
    )


def record_inference(function_name: str, variant_name: str, results: list, processing_s: float) -> None:
    if not _metrics:
        return
    _metrics["requests"].inc(tags={"endpoint": "inference", "function_name": function_name, "metric_name": ""})
    names = {"function_name": function_name, "variant_name": variant_name}
    _metrics["inferences"].inc(tags=names)
    _metrics["latency"].observe(processing_s, tags=names)
    for result in results:
        _metrics["model_inferences"].inc(
            tags={"model_name": result.model_name, "provider_name": result.model_provider_name}
        )
        if result.usage.input_tokens:
            _metrics["input_tokens"].inc(result.usage.input_tokens)
        if result.usage.output_tokens:
            _metrics["output_tokens"].inc(result.usage.output_tokens)


def record_feedback(metric_name: str) -> None:
    if _metrics:
        _metrics["requests"].inc(tags={"endpoint": "feedback", "function_name": "", "metric_name": metric_name})
