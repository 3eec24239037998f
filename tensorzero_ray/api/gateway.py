"""The Gateway: TensorZero's HTTP API as an ASGI app. It parses and checks requests, hands
them to the FunctionRouters, and shapes errors as TensorZero does (spec §1.0)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from tensorzero_ray import __version__, telemetry
from tensorzero_ray.api.admission import Admission, LoadShedder
from tensorzero_ray.api.authentication import Authentication
from tensorzero_ray.api.batch_routes import add_batch_routes
from tensorzero_ray.api.data_routes import add_data_routes
from tensorzero_ray.api.dicl_routes import add_dicl_routes
from tensorzero_ray.api.evaluation_routes import add_evaluation_routes
from tensorzero_ray.api.experiment_routes import add_experiment_routes
from tensorzero_ray.api.hot_paths import Handler, HotPaths
from tensorzero_ray.api.http_io import (
    ErrorResponses,
    json_response,
    parse_body,
    parse_inference_request,
    read_body,
    read_json,
    sse_response,
    stream_error_message,
)
from tensorzero_ray.api.openai_routes import add_openai_routes
from tensorzero_ray.api.optimization_routes import add_optimization_routes
from tensorzero_ray.api.prometheus import prometheus_text
from tensorzero_ray.api.tracing import Tracing
from tensorzero_ray.auth import ApiKeys
from tensorzero_ray.config import Config
from tensorzero_ray.errors import InvalidRequest, RouteNotFound, TensorZeroError, UnknownFunction
from tensorzero_ray.evaluations.workflow import WorkflowEpisodeRequest, WorkflowEvaluations, WorkflowRunRequest
from tensorzero_ray.feedback import FeedbackService
from tensorzero_ray.functions.routers import Routers
from tensorzero_ray.inference.provider_health import health_report
from tensorzero_ray.store.observability import ObservabilityClient
from tensorzero_ray.types.feedback import FeedbackRequest
from tensorzero_ray.ui.security import MAX_UI_BODY_BYTES
from tensorzero_ray.ui.server import UIServer


def _auth_ttl_s(config: Config) -> float:
    cache = config.gateway.auth.cache
    return cache.ttl_ms / 1000 if cache.enabled else 0.0


def config_hash(config: Config) -> str:
    return hashlib.sha256(orjson.dumps(config.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)).hexdigest()


def create_app(
    config: Config,
    routers: Routers,
    observability: ObservabilityClient | None = None,
    ui: Any = None,
    shedder: LoadShedder | None = None,
    experiments: Any = None,
    local_models: dict[str, Any] | None = None,
) -> FastAPI:
    """`ui` is the UI server (in process) or its Serve deployment handle; `/ui/...` goes there.
    `experiments` is the experiment controller (object or handle), when there is one;
    `local_models` the handles of self-hosted models (the embeddings endpoint uses them)."""
    app = FastAPI(title="tensorzero-ray gateway", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.shedder = shedder = shedder or LoadShedder()
    errors = ErrorResponses(structured=config.gateway.unstable_error_json)
    hot: dict[str, Handler] = {}
    # Added first, so it runs inside admission control.
    app.add_middleware(HotPaths, handlers=hot, on_error=errors.native)
    app.add_middleware(Admission, shedder=shedder)
    if config.gateway.export.otlp.traces.enabled:
        telemetry.configure(config.gateway.export.otlp.traces)
        app.add_middleware(Tracing)
    # Keys can be made before auth is turned on; with it on, they are checked outermost.
    app.state.api_keys = keys = None
    app.state.internal_token = secrets.token_urlsafe(32)
    if observability is not None:
        app.state.api_keys = keys = ApiKeys(observability, ttl_s=_auth_ttl_s(config))
    if config.gateway.auth.enabled:
        if keys is None:
            raise ValueError("`gateway.auth.enabled` needs observability on: API keys are stored in ClickHouse")
        app.add_middleware(Authentication, keys=keys, errors=errors, internal_token=app.state.internal_token)
    hashed = config_hash(config)
    feedback = FeedbackService(config, observability)
    app.state.routers = routers
    app.state.feedback = feedback
    workflows = WorkflowEvaluations(config, observability)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return errors.native(RouteNotFound(request.method, request.url.path))
        return json_response({"error": str(exc.detail)}, exc.status_code)

    @app.exception_handler(TensorZeroError)
    async def _tensorzero_error(request: Request, exc: TensorZeroError) -> Response:
        return errors.native(exc)

    @app.get("/status")
    async def status() -> Response:
        body: dict = {"status": "ok", "version": __version__, "config_hash": hashed}
        # Not in TensorZero: provider health of the models that balance or break circuits.
        health = health_report(config.models)
        if health:
            body["models"] = health
        return json_response(body)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(await prometheus_text(observability), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    async def health() -> Response:
        clickhouse = "ok"
        if observability is not None:
            try:
                clickhouse = (await observability.status())["clickhouse"]
            except Exception:  # noqa: BLE001 - an unreachable writer is an unhealthy backend
                clickhouse = "error"
        body = {"gateway": "ok", "clickhouse": clickhouse, "postgres": "ok", "valkey": "ok", "valkey_cache": "ok"}
        return json_response(body, 200 if clickhouse == "ok" else 503)

    @app.post("/feedback")
    async def post_feedback(http_request: Request) -> Response:
        request = parse_body(FeedbackRequest, await read_json(http_request))
        try:
            feedback_id = await feedback.submit(request)
        except Exception as exc:  # noqa: BLE001
            return errors.native(exc)
        return json_response({"feedback_id": str(feedback_id)})

    @app.post("/workflow_evaluation_run")
    @app.post("/dynamic_evaluation_run")
    async def workflow_evaluation_run(http_request: Request) -> Response:
        request = parse_body(WorkflowRunRequest, await read_json(http_request))
        return json_response({"run_id": await workflows.create_run(request)})

    @app.post("/workflow_evaluation_run/{run_id}/episode")
    @app.post("/dynamic_evaluation_run/{run_id}/episode")
    async def workflow_evaluation_episode(run_id: str, http_request: Request) -> Response:
        request = parse_body(WorkflowEpisodeRequest, await read_json(http_request))
        return json_response({"episode_id": await workflows.create_episode(run_id, request)})

    @app.post("/inference")
    async def inference(http_request: Request) -> Response:
        function_name, request = parse_inference_request(await read_json(http_request))
        if not routers.knows(function_name):
            return errors.native(UnknownFunction(function_name))
        await workflows.apply(function_name, request)
        if not request.stream:
            try:
                # Not shielded: work for a client that hung up is dropped (it was never
                # acknowledged, so nothing is owed to it).
                response = await routers.infer(function_name, request)
            except Exception as exc:  # noqa: BLE001 - every failure becomes an error body
                return errors.native(exc)
            return json_response(response.model_dump(mode="json"))
        events = routers.stream(function_name, request).__aiter__()
        try:
            first = await events.__anext__()
        except Exception as exc:  # noqa: BLE001
            return errors.native(exc)
        return sse_response(_prepend(first, events))

    hot["/inference"] = inference
    hot["/feedback"] = post_feedback
    hot["/openai/v1/chat/completions"] = add_openai_routes(app, config, routers, workflows, local_models)
    add_batch_routes(app, routers, observability, errors)
    add_evaluation_routes(app, config, observability)
    add_experiment_routes(app, config, routers, observability, experiments)
    add_dicl_routes(app, config, observability)
    add_optimization_routes(app, config, observability)
    add_data_routes(app, config, routers, observability)
    if ui is not None:
        _add_ui_forwarding(app, ui)
    return app


# What the UI needs to see of a request: its host and origin (for its host and cross-site
# checks) and its cookie (for the form token).
UI_REQUEST_HEADERS = ("content-type", "accept", "host", "origin", "referer", "cookie")


def _add_ui_forwarding(app: FastAPI, ui: Any) -> None:
    handle = ui.handle if isinstance(ui, UIServer) else ui.handle.remote

    @app.get("/ui")
    async def ui_root() -> Response:
        return RedirectResponse("/ui/", 308)

    @app.api_route("/ui/{path:path}", methods=["GET", "POST"])
    async def ui_page(path: str, request: Request) -> Response:
        if any(ord(c) < 32 or ord(c) == 127 for c in path):
            raise InvalidRequest("The path contains a control character")
        headers = {k: v for k in UI_REQUEST_HEADERS if (v := request.headers.get(k))}
        body = await read_body(request, MAX_UI_BODY_BYTES)
        status, out_headers, body = await handle(request.method, "/" + path, request.url.query, headers, body)
        response = Response(body, status_code=status)
        response.raw_headers = [h for h in response.raw_headers if h[0] == b"content-length"] + [
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in out_headers if k.lower() != "content-length"
        ]
        return response


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    try:
        async for event in rest:
            yield event
    except Exception as exc:  # noqa: BLE001 - a broken stream still ends with an error event
        yield b"data: " + orjson.dumps({"error": stream_error_message(exc)}) + b"\n\n"
        yield b"data: [DONE]\n\n"
