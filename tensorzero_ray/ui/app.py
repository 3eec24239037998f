"""The web UI as an ASGI app: server-rendered pages over the same Store and services as the
gateway API. Paths follow TensorZero's UI (spec §5.1) under `base` (`/ui`). Errors become
pages: a clear "not found" with a link back, the API's message for bad input, and never a
stack trace."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from tensorzero_ray import __version__
from tensorzero_ray.config import Config
from tensorzero_ray.datasets import DatasetService, StoredInferenceQueries
from tensorzero_ray.errors import NotFound, TensorZeroError
from tensorzero_ray.feedback import FeedbackService
from tensorzero_ray.replay import Replayer
from tensorzero_ray.store.observability import ObservabilityClient
from tensorzero_ray.ui.queries import UIQueries
from tensorzero_ray.ui.render import Pages
from tensorzero_ray.ui.security import UISecurity

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


@dataclass
class UIState:
    config: Config
    observability: ObservabilityClient | None
    pages: Pages
    queries: UIQueries
    inferences: StoredInferenceQueries
    datasets: DatasetService
    feedback: FeedbackService
    replayer: Replayer | None
    config_hash: str
    base: str
    # The experiment controller (object or Serve handle), when the stack runs one.
    experiments: Any = None

    async def flush(self) -> None:
        """Make a write from a form visible on the page the browser goes to next."""
        if self.observability is not None:
            await self.observability.flush()


def create_ui_app(
    config: Config,
    observability: ObservabilityClient | None,
    *,
    infer: Any = None,
    base: str = "/ui",
    config_hash: str = "",
    experiments: Any = None,
) -> FastAPI:
    """`infer(function_name, request)` runs dry-run inferences for "try with another
    variant"; without it that action is not offered."""
    from tensorzero_ray.ui import api_key_pages, dataset_pages, evaluation_pages, observability_pages, system_pages

    app = FastAPI(title="tensorzero-ray UI", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    inferences = StoredInferenceQueries(config, observability)
    state = UIState(
        config=config,
        observability=observability,
        pages=Pages(base),
        queries=UIQueries(config, observability),
        inferences=inferences,
        datasets=DatasetService(config, observability, inferences),
        feedback=FeedbackService(config, observability),
        replayer=Replayer(config, infer) if infer is not None else None,
        config_hash=config_hash,
        base=base,
        experiments=experiments,
    )
    app.state.ui = state
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(
        UISecurity,
        refuse=lambda status, message: state.pages.render("error.html", status, message=message),
        allowed_hosts=config.gateway.security.ui_allowed_hosts,
    )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return state.pages.render("not_found.html", 404, what="page", detail=str(request.url.path))
        return state.pages.render("error.html", exc.status_code, message=str(exc.detail))

    @app.exception_handler(TensorZeroError)
    async def _tensorzero_error(request: Request, exc: TensorZeroError) -> Response:
        if isinstance(exc, NotFound):
            return state.pages.render("not_found.html", 404, what="item", detail=exc.message)
        return state.pages.render("error.html", exc.status_code, message=exc.message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("UI page %s failed", request.url.path)
        return state.pages.render("error.html", 500, message="Something went wrong on the server; see its logs.")

    observability_pages.add_routes(app, state)
    dataset_pages.add_routes(app, state)
    evaluation_pages.add_routes(app, state)
    system_pages.add_routes(app, state)
    api_key_pages.add_routes(app, state)
    return app
