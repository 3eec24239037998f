"""Datasets: the list, the builder (filters, output source, preview count), a dataset's
datapoints, and one datapoint's view and edit."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from tensorzero_ray.errors import InvalidRequest, NotFound, TensorZeroError
from tensorzero_ray.types.datasets import FromInferenceQuery, ListDatapointsRequest, UpdateMetadataRequest
from tensorzero_ray.ui.app import UIState
from tensorzero_ray.ui.forms import FILTER_FIELDS, form_fields, list_request, page_args, parse_id, validated
from tensorzero_ray.validation import check_json_depth


def _dataset_url(state: UIState, name: str) -> str:
    return f"{state.base}/datasets/{quote(name, safe='')}"


def _edited_output(kind: str, raw: str) -> Any:
    """The edit form's output text: JSON text for JSON functions; for chat, a JSON list of
    content blocks when it parses as one, else plain text."""
    if kind == "json":
        return {"raw": raw}
    stripped = raw.strip()
    if stripped.startswith("["):
        try:
            blocks = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            return raw
        check_json_depth(blocks)
        return blocks
    return raw


def _tags(raw: str) -> dict[str, str]:
    if not raw.strip():
        return {}
    try:
        tags = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"Tags must be a JSON object of strings: {exc}") from None
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise InvalidRequest("Tags must be a JSON object of strings")
    return tags


def add_routes(app: FastAPI, state: UIState) -> None:
    config = state.config
    pages = state.pages

    @app.get("/datasets")
    async def datasets() -> Response:
        return pages.render("datasets.html", datasets=(await state.datasets.datasets()).datasets)

    @app.post("/datasets/{dataset}/delete")
    async def delete_dataset(dataset: str) -> Response:
        await state.datasets.delete_dataset(dataset)
        return RedirectResponse(f"{state.base}/datasets", 303)

    async def builder_page(form: dict[str, str], *, status: int = 200, **extra: Any) -> Response:
        return pages.render(
            "builder.html",
            status,
            form=form,
            functions=sorted(config.functions),
            metrics=config.metrics,
            datasets=[d.dataset_name for d in (await state.datasets.datasets()).datasets],
            **extra,
        )

    @app.get("/datasets/builder")
    async def builder(request: Request) -> Response:
        form = {k: request.query_params.get(k, "") for k in (*FILTER_FIELDS, "dataset_name", "limit")}
        if not request.query_params.get("preview"):
            return await builder_page(form)
        try:
            query = list_request(config, form, offset=0, limit=0)
            count = await state.inferences.count(query)
        except TensorZeroError as exc:
            return await builder_page(form, status=exc.status_code, form_error=exc.message)
        return await builder_page(form, preview=count)

    @app.post("/datasets/builder")
    async def build(request: Request) -> Response:
        form = await form_fields(request)
        dataset = form.get("dataset_name", "").strip()
        try:
            if not dataset:
                raise InvalidRequest("Give the dataset a name")
            if not form.get("function"):
                raise InvalidRequest("Choose the function whose inferences go into the dataset")
            limit = int(form.get("limit") or 1000)
            query = list_request(config, form, offset=0, limit=min(max(limit, 1), 100_000))
            source = validated(FromInferenceQuery, {"type": "inference_query", **query.model_dump(exclude_none=True)})
            ids = await state.datasets.from_inferences(dataset, source)
        except ValueError:
            return await builder_page(form, status=400, form_error="`limit` must be a whole number")
        except TensorZeroError as exc:
            return await builder_page(form, status=exc.status_code, form_error=exc.message)
        if not ids:
            return await builder_page(form, status=400, form_error="No inferences match these filters; nothing added")
        return RedirectResponse(f"{_dataset_url(state, dataset)}?created={len(ids)}", 303)

    @app.get("/datasets/{dataset}")
    async def dataset_page(dataset: str, request: Request) -> Response:
        limit, offset = page_args(request)
        function = request.query_params.get("function") or None
        rows = await state.datasets.list(
            dataset, ListDatapointsRequest(function_name=function, limit=limit + 1, offset=offset)
        )
        keep = {"function": function} if function else {}
        return pages.render(
            "dataset.html",
            name=dataset,
            rows=rows[:limit],
            created=request.query_params.get("created"),
            offset=offset,
            prev_link=urlencode({**keep, "limit": limit, "offset": max(offset - limit, 0)}) if offset else None,
            next_link=urlencode({**keep, "limit": limit, "offset": offset + limit}) if len(rows) > limit else None,
        )

    async def datapoint_page(dataset: str, datapoint_id: str, *, status: int = 200, **extra: Any) -> Response:
        point = await state.datasets.get_one(parse_id(datapoint_id, "Datapoint"), dataset)
        if isinstance(point.output, dict):
            output_text = point.output.get("raw") or ""
        elif point.output and all(b.get("type") == "text" for b in point.output):
            output_text = "".join(b["text"] for b in point.output)
        else:
            output_text = orjson.dumps(point.output, option=orjson.OPT_INDENT_2).decode() if point.output else ""
        return pages.render(
            "datapoint.html",
            status,
            dataset=dataset,
            point=point,
            output_text=output_text,
            tags_text=orjson.dumps(point.tags).decode(),
            **extra,
        )

    @app.get("/datasets/{dataset}/datapoint/{datapoint_id}")
    async def datapoint(dataset: str, datapoint_id: str) -> Response:
        return await datapoint_page(dataset, datapoint_id)

    @app.post("/datasets/{dataset}/datapoint/{datapoint_id}")
    async def edit_datapoint(dataset: str, datapoint_id: str, request: Request) -> Response:
        form = await form_fields(request)
        try:
            point = await state.datasets.get_one(parse_id(datapoint_id, "Datapoint"), dataset)
            if point.staled_at is not None:
                raise InvalidRequest("This datapoint was edited or deleted since; open its current version")
            change = {"id": point.id, "output": _edited_output(point.type, form.get("output", "")),
                      "tags": _tags(form.get("tags", ""))}  # fmt: skip
            (new_id,) = await state.datasets.update(dataset, [change])
            name = form.get("name", "").strip() or None
            if name != point.name:
                await state.datasets.update_metadata(
                    dataset, validated(UpdateMetadataRequest, {"datapoints": [{"id": new_id, "name": name}]})
                )
        except TensorZeroError as exc:
            if isinstance(exc, NotFound):
                raise
            return await datapoint_page(dataset, datapoint_id, status=exc.status_code, form_error=exc.message)
        return RedirectResponse(f"{_dataset_url(state, dataset)}/datapoint/{new_id}", 303)

    @app.post("/datasets/{dataset}/datapoint/{datapoint_id}/delete")
    async def delete_datapoint(dataset: str, datapoint_id: str) -> Response:
        await state.datasets.delete(dataset, [parse_id(datapoint_id, "Datapoint")])
        return RedirectResponse(_dataset_url(state, dataset), 303)
