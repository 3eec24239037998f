"""Evaluations in the UI: the runs (TensorZero's `/evaluations`), runs compared side by side
with each evaluator's statistics and every datapoint's reference, outputs and scores, a
person's score on an evaluated output, and workflow-evaluation runs by project."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import FastAPI, Query, Request
from fastapi.responses import RedirectResponse, Response

from tensorzero_ray.errors import InvalidRequest
from tensorzero_ray.evaluations.human_feedback import DATAPOINT_TAG, HUMAN_FEEDBACK_TAG
from tensorzero_ray.types.feedback import FeedbackRequest
from tensorzero_ray.ui.app import UIState
from tensorzero_ray.ui.evaluation_queries import EvaluationQueries
from tensorzero_ray.ui.forms import form_fields, parse_id


def add_routes(app: FastAPI, state: UIState) -> None:
    queries = EvaluationQueries(state.observability)
    pages = state.pages

    @app.get("/evaluations")
    async def evaluations() -> Response:
        return pages.render("evaluations.html", runs=await queries.runs())

    @app.get("/evaluations/runs")
    async def compare(evaluation_run_ids: str = "", run: list[str] = Query(default=[])) -> Response:
        """Runs named as TensorZero's UI names them (`evaluation_run_ids=a,b`) or ticked in the list."""
        named = [*evaluation_run_ids.split(","), *run]
        ids = list(dict.fromkeys(parse_id(i.strip(), "Evaluation run") for i in named if i.strip()))
        if not ids:
            raise InvalidRequest("Pick at least one evaluation run (`evaluation_run_ids=<id>,<id>`)")
        found = await queries.compare(ids)
        missing = [i for i in ids if i not in {r["run_id"] for r in found.runs}]
        if missing:
            raise InvalidRequest(f"No evaluation run `{missing[0]}`")
        return pages.render("evaluation_runs.html", comparison=found, run_ids=",".join(ids))

    @app.post("/evaluations/human_feedback")
    async def human_feedback(request: Request) -> Response:
        """A person's score of one evaluated output; later runs reuse it for the same output."""
        form = await form_fields(request)
        value = {"true": True, "false": False}.get(form.get("value", ""))
        if value is None:
            raise InvalidRequest("A human score here is true or false")
        await state.feedback.submit(
            FeedbackRequest(
                metric_name=form.get("metric_name", ""),
                inference_id=parse_id(form.get("inference_id", ""), "Inference"),
                value=value,
                internal=True,
                tags={
                    DATAPOINT_TAG: parse_id(form.get("datapoint_id", ""), "Datapoint"),
                    HUMAN_FEEDBACK_TAG: "true",
                    "source": "ui",
                },
            )
        )
        await state.flush()
        query = urlencode({"evaluation_run_ids": form.get("evaluation_run_ids", "")})
        return RedirectResponse(f"{state.base}/evaluations/runs?{query}", 303)

    @app.get("/workflow-evaluations")
    async def workflow_evaluations() -> Response:
        runs = await queries.workflow_runs()
        projects: dict[str, list] = {}
        for run in runs:
            projects.setdefault(run["project_name"] or "(no project)", []).append(run)
        return pages.render("workflow_evaluations.html", projects=projects)
