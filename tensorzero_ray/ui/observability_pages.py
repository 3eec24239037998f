"""Home, inferences, episodes, functions, variants and models pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from tensorzero_ray.config.functions import JsonFunctionConfig
from tensorzero_ray.config.variants import ChatCompletionVariantConfig
from tensorzero_ray.errors import InvalidRequest, NotFound, TensorZeroError
from tensorzero_ray.experimentation.sampling import build_sampler
from tensorzero_ray.inference.provider_health import health_report
from tensorzero_ray.types.datasets import FromInferenceIds
from tensorzero_ray.types.feedback import FeedbackRequest
from tensorzero_ray.types.replay import ReplayRequest
from tensorzero_ray.types.stored import GetInferencesRequest, ListInferencesRequest, StoredInference
from tensorzero_ray.ui.app import UIState
from tensorzero_ray.ui.charts import Series, colors_for, line_chart, share_bar
from tensorzero_ray.ui.experiment_panel import experiment_panel
from tensorzero_ray.ui.forms import (
    FILTER_FIELDS,
    PAGE_SIZES,
    feedback_value,
    form_fields,
    list_request,
    page_args,
    parse_id,
    validated,
)


async def _inference(state: UIState, inference_id: str) -> StoredInference:
    found = await state.inferences.get(GetInferencesRequest(ids=[parse_id(inference_id, "Inference")]))
    if not found:
        raise NotFound(f"No inference with id {inference_id}")
    return found[0]


def add_routes(app: FastAPI, state: UIState) -> None:
    config = state.config
    pages = state.pages

    @app.get("/")
    async def home() -> Response:
        overview = await state.queries.overview()
        recent = await state.inferences.list(ListInferencesRequest(limit=10))
        datasets = (await state.datasets.datasets()).datasets
        return pages.render(
            "home.html",
            overview=overview,
            recent=recent,
            feedback=await state.queries.recent_feedback(),
            datasets=datasets,
            functions=len(config.functions),
            models=len(config.models),
        )

    @app.get("/resolve")
    async def resolve(id: str = "") -> Response:
        """The search box: whatever a UUID names, go to its page."""
        value = parse_id(id.strip(), "Search")
        kind = await state.queries.kind_of(value)
        if kind == "inference":
            return RedirectResponse(f"{state.base}/observability/inferences/{value}", 303)
        if kind == "episode":
            return RedirectResponse(f"{state.base}/observability/episodes/{value}", 303)
        point = await state.datasets.get_one(value)
        return RedirectResponse(f"{state.base}/datasets/{point.dataset_name}/datapoint/{point.id}", 303)

    @app.get("/observability/inferences")
    async def inferences(request: Request) -> Response:
        form = {k: request.query_params.get(k, "") for k in FILTER_FIELDS}
        limit, offset = page_args(request)
        query = list_request(config, form, offset=offset, limit=limit)
        rows = await state.inferences.list(query)
        total = await state.inferences.count(query.model_copy(update={"limit": 0, "offset": None}))
        keep = {k: v for k, v in form.items() if v}
        return pages.render(
            "inferences.html",
            rows=rows,
            form=form,
            total=total,
            offset=offset,
            limit=limit,
            page_sizes=PAGE_SIZES,
            prev_link=urlencode({**keep, "limit": limit, "offset": max(offset - limit, 0)}) if offset else None,
            next_link=urlencode({**keep, "limit": limit, "offset": offset + limit}) if offset + limit < total else None,
            functions=sorted(config.functions),
            metrics=config.metrics,
        )

    async def inference_page(inference_id: str, *, status: int = 200, **extra: Any) -> Response:
        inference = await _inference(state, inference_id)
        model_inferences = await state.queries.model_inferences(inference.inference_id)
        function = config.functions.get(inference.function_name)
        variants = sorted(function.variants) if function is not None else []
        runnable = (
            [v for v in variants if isinstance(function.variants[v], ChatCompletionVariantConfig)]
            if function is not None
            else []
        )
        metrics = {n: m for n, m in config.metrics.items() if m.level == "inference"}
        return pages.render(
            "inference.html",
            status,
            inference=inference,
            model_inferences=model_inferences,
            feedback=await state.queries.feedback_for(inference.inference_id),
            tokens=(
                sum(m["input_tokens"] or 0 for m in model_inferences),
                sum(m["output_tokens"] or 0 for m in model_inferences),
            ),
            cost=sum(m["cost"] or 0 for m in model_inferences),
            metrics=metrics,
            variants=runnable if state.replayer is not None else [],
            datasets=[d.dataset_name for d in (await state.datasets.datasets()).datasets],
            **extra,
        )

    @app.get("/observability/inferences/{inference_id}")
    async def inference(inference_id: str) -> Response:
        return await inference_page(inference_id)

    @app.post("/observability/inferences/{inference_id}/feedback")
    async def add_feedback(inference_id: str, request: Request) -> Response:
        inference = await _inference(state, inference_id)
        form = await form_fields(request)
        metric = form.get("metric_name", "")
        try:
            value = feedback_value(config, metric, form.get("value", ""), inference.type)
            body = validated(
                FeedbackRequest,
                {
                    "metric_name": metric,
                    "value": value,
                    "inference_id": inference.inference_id,
                    "tags": {"source": "ui"},
                },
            )
            await state.feedback.submit(body)
        except TensorZeroError as exc:
            return await inference_page(inference_id, status=exc.status_code, form_error=exc.message)
        await state.flush()
        return RedirectResponse(f"{state.base}/observability/inferences/{inference_id}#feedback", 303)

    @app.post("/observability/inferences/{inference_id}/dataset")
    async def add_to_dataset(inference_id: str, request: Request) -> Response:
        inference = await _inference(state, inference_id)
        form = await form_fields(request)
        dataset = form.get("dataset_name", "").strip()
        try:
            if not dataset:
                raise InvalidRequest("Give the dataset a name")
            source = validated(
                FromInferenceIds,
                {
                    "type": "inference_ids",
                    "inference_ids": [inference.inference_id],
                    "output_source": form.get("output_source") or "inference",
                },
            )
            (datapoint_id,) = await state.datasets.from_inferences(dataset, source)
        except TensorZeroError as exc:
            return await inference_page(inference_id, status=exc.status_code, form_error=exc.message)
        return RedirectResponse(f"{state.base}/datasets/{dataset}/datapoint/{datapoint_id}", 303)

    @app.post("/observability/inferences/{inference_id}/try")
    async def try_variant(inference_id: str, request: Request) -> Response:
        inference = await _inference(state, inference_id)
        if state.replayer is None:
            raise InvalidRequest("Trying other variants is not available in this UI")
        form = await form_fields(request)
        try:
            replay = validated(
                ReplayRequest, {"inference_ids": [inference.inference_id], "variant_name": form.get("variant_name")}
            )
        except TensorZeroError as exc:
            return await inference_page(inference_id, status=exc.status_code, form_error=exc.message)
        result = await state.replayer.run([inference], replay)
        return await inference_page(inference_id, tried=result.comparisons[0])

    @app.get("/observability/episodes")
    async def episodes(request: Request) -> Response:
        limit, offset = page_args(request)
        rows = await state.queries.episodes(limit + 1, offset)
        return pages.render(
            "episodes.html",
            rows=rows[:limit],
            offset=offset,
            limit=limit,
            prev_link=urlencode({"limit": limit, "offset": max(offset - limit, 0)}) if offset else None,
            next_link=urlencode({"limit": limit, "offset": offset + limit}) if len(rows) > limit else None,
        )

    async def episode_page(episode_id: str, *, status: int = 200, **extra: Any) -> Response:
        episode_id = parse_id(episode_id, "Episode")
        rows = await state.inferences.list(
            ListInferencesRequest(
                episode_id=episode_id, limit=200, order_by=[{"by": "timestamp", "direction": "ascending"}]
            )
        )
        if not rows:
            raise NotFound(f"No episode with id {episode_id}")
        return pages.render(
            "episode.html",
            status,
            episode_id=episode_id,
            rows=rows,
            feedback=await state.queries.feedback_for(episode_id),
            metrics={n: m for n, m in config.metrics.items() if m.level == "episode"},
            **extra,
        )

    @app.get("/observability/episodes/{episode_id}")
    async def episode(episode_id: str) -> Response:
        return await episode_page(episode_id)

    @app.post("/observability/episodes/{episode_id}/feedback")
    async def add_episode_feedback(episode_id: str, request: Request) -> Response:
        episode_id = parse_id(episode_id, "Episode")
        form = await form_fields(request)
        metric = form.get("metric_name", "")
        try:
            if metric == "demonstration":
                raise InvalidRequest("Demonstrations belong to an inference, not an episode")
            value = feedback_value(config, metric, form.get("value", ""), "chat")
            body = validated(
                FeedbackRequest,
                {"metric_name": metric, "value": value, "episode_id": episode_id, "tags": {"source": "ui"}},
            )
            await state.feedback.submit(body)
        except TensorZeroError as exc:
            return await episode_page(episode_id, status=exc.status_code, form_error=exc.message)
        await state.flush()
        return RedirectResponse(f"{state.base}/observability/episodes/{episode_id}#feedback", 303)

    @app.get("/observability/functions")
    async def functions() -> Response:
        counts = await state.queries.function_counts()
        table = [
            {
                "name": name,
                "type": function.type,
                "variants": len(function.variants),
                "inferences": sum(counts.get(name, {}).values()),
            }
            for name, function in sorted(config.functions.items())
        ]
        return pages.render("functions.html", functions=table)

    def _function(name: str):
        function = config.functions.get(name)
        if function is None:
            raise NotFound(f"No function named `{name}` in the config")
        return function

    @app.get("/observability/functions/{function_name}")
    async def function_page(function_name: str, metric: str = "") -> Response:
        function = _function(function_name)
        counts = (await state.queries.function_counts()).get(function_name, {})
        probabilities = build_sampler(function_name, function.variants, function.experimentation).probabilities()
        total = sum(counts.values())
        numbers = await state.queries.variant_numbers(function_name)
        variants = [
            {
                "name": name,
                "type": variant.type,
                "model": getattr(variant, "model", ""),
                "probability": probabilities.get(name, 0.0),
                "inferences": counts.get(name, 0),
                "share": counts.get(name, 0) / total if total else 0.0,
                "latency": (numbers.get(name) or {}).get("latency"),
            }
            for name, variant in sorted(function.variants.items())
        ]
        metric_names = sorted(config.metrics)
        if metric and metric not in config.metrics:
            raise InvalidRequest(f"Unknown metric: `{metric}` is not in the config's [metrics]")
        with_data = await state.queries.metric_feedback_counts(function_name)
        chosen = metric or default_metric(function, metric_names, with_data)
        width, throughput = await state.queries.variant_throughput(function_name)
        series = await state.queries.metric_by_variant(function_name, chosen) if chosen else None
        # One colour per variant on every chart of the page, variants no longer in the config too.
        colors = colors_for([*function.variants, *(n for n in throughput if n not in function.variants)])
        metric_chart, estimates = None, {}
        if chosen:
            estimates = series.final if series else {}
            metric_chart = line_chart(
                [
                    Series(
                        name,
                        [(t, e.mean) for t, e in points],
                        band=[(t, e.low, e.high) for t, e in points],
                    )
                    for name, points in (series.points.items() if series else [])
                ],
                title=f"{chosen}: mean per variant with 95% "
                + ("Wilson interval" if config.metrics[chosen].type == "boolean" else "interval")
                + " (cumulative)",
                y_label=chosen,
                colors=colors,
                y_range=(0.0, 1.0) if config.metrics[chosen].type == "boolean" else None,
            )
        token_width, tokens = await state.queries.token_usage(function_name)
        recent = await state.inferences.list(ListInferencesRequest(function_name=function_name, limit=10))
        experiment = await experiment_panel(state, function_name, function, chosen, colors)
        return pages.render(
            "function.html",
            experiment=experiment,
            name=function_name,
            function=function,
            is_json=isinstance(function, JsonFunctionConfig),
            variants=variants,
            traffic=share_bar({v["name"]: v["inferences"] for v in variants if v["inferences"]}, colors)
            if total
            else None,
            metric_names=metric_names,
            with_data=with_data,
            chosen=chosen,
            metric_chart=metric_chart,
            estimates=estimates,
            throughput_chart=line_chart(
                [Series(name, points) for name, points in sorted(throughput.items())],
                title=f"Inferences per {_width(width)} by variant",
                y_label="inferences",
                colors=colors,
            ),
            token_chart=line_chart(
                [Series(name, points) for name, points in tokens.items()],
                title=f"Tokens per {_width(token_width)}",
                y_label="tokens",
                colors=TOKEN_COLORS,
            ),
            recent=recent,
            total=total,
        )

    @app.get("/observability/functions/{function_name}/variants/{variant_name}")
    async def variant_page(function_name: str, variant_name: str) -> Response:
        function = _function(function_name)
        variant = function.variants.get(variant_name)
        if variant is None:
            raise NotFound(f"Function `{function_name}` has no variant named `{variant_name}`")
        numbers = (await state.queries.variant_numbers(function_name)).get(variant_name, {})
        estimates = {}
        for metric_name in sorted(config.metrics):
            series = await state.queries.metric_by_variant(function_name, metric_name)
            if series is not None and variant_name in series.final:
                estimates[metric_name] = series.final[variant_name]
        templates = variant.template_texts() if isinstance(variant, ChatCompletionVariantConfig) else {}
        recent = await state.inferences.list(
            ListInferencesRequest(function_name=function_name, variant_name=variant_name, limit=10)
        )
        return pages.render(
            "variant.html",
            function_name=function_name,
            name=variant_name,
            variant=variant.model_dump(mode="json", exclude_none=True),
            templates=templates,
            numbers=numbers,
            estimates=estimates,
            recent=recent,
        )

    @app.get("/observability/models")
    async def models() -> Response:
        rows = await state.queries.model_numbers()
        width, series = await state.queries.model_timeseries()
        unit = _width(width)
        charts = {
            "requests": (f"Model inferences per {unit}", "inferences"),
            "latency": (f"Median response time per {unit}", "ms"),
            "errors": (f"Failed provider calls per {unit}", "failures"),
            "ttft": (f"Median time to first token per {unit} (streamed calls)", "ms"),
        }
        # A model keeps its colour across the four charts, even where it has no data.
        colors = colors_for(sorted({name for by_model in series.values() for name in by_model}))
        drawn = {
            f"{key}_chart": line_chart(
                [Series(name, points) for name, points in sorted(series.get(key, {}).items())],
                title=title,
                y_label=y_label,
                colors=colors,
            )
            for key, (title, y_label) in charts.items()
        }
        return pages.render("models.html", rows=rows, health=health_report(config.models), **drawn)


# Token counts are not variants: their own colours, none of the variants'.
TOKEN_COLORS = {"input tokens": "#94a3b8", "output tokens": "#1e293b"}


def default_metric(function, metric_names: list[str], with_data: dict[str, int]) -> str:
    """The metric a function page opens on: its experiment's, else the one with the most
    feedback on this function, else the first."""
    experiment_metric = getattr(function.experimentation, "metric", None)
    if experiment_metric in metric_names:
        return experiment_metric
    ranked = sorted((n for n in metric_names if with_data.get(n)), key=lambda n: -with_data[n])
    return ranked[0] if ranked else (metric_names[0] if metric_names else "")


def _width(seconds: int) -> str:
    names = {
        1: "second",
        5: "5 seconds",
        10: "10 seconds",
        30: "30 seconds",
        60: "minute",
        300: "5 minutes",
        900: "15 minutes",
        3600: "hour",
        21600: "6 hours",
        86400: "day",
    }
    return names.get(seconds, "week" if seconds == 7 * 86400 else "month" if seconds else "period")
