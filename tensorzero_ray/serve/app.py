"""The Serve application: a Gateway ingress, one FunctionRouter deployment per function, a
LocalModel deployment per self-hosted model, and the ObservabilityWriter. `build_app` is what
`serve run` / `serve deploy` import (see deployments/)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
from ray import serve
from ray.serve import Application

from tensorzero_ray.config import Config, load_config
from tensorzero_ray.errors import InvalidRequest, UnknownFunction
from tensorzero_ray.serve.function_router import DEFAULT_FUNCTION, FunctionRouter
from tensorzero_ray.serve.gateway import config_hash, create_app
from tensorzero_ray.serve.http_io import parse_body, parse_inference_request
from tensorzero_ray.serve.local_model import bind_local_models
from tensorzero_ray.serve.observability import ObservabilityClient, ObservabilityWriterDeployment, StorageSettings
from tensorzero_ray.serve.routers import DeploymentRouters, LocalRouters, model_registry
from tensorzero_ray.types.feedback import FeedbackRequest
from tensorzero_ray.ui.server import UIServer

APP_NAME = "tensorzero"
ROUTER_AUTOSCALING = {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 64}
# The gateway and routers wait on the network, not the CPU: a fraction of a core each lets a
# small machine hold every function's router. Override per deployment in the Serve YAML.
ACTOR_OPTIONS = {"num_cpus": 0.1}


def _observability(storage: StorageSettings | None, writer: Any) -> ObservabilityClient | None:
    return ObservabilityClient(storage, writer) if storage is not None else None


class Gateway:
    """Serve ingress; routers are handles to FunctionRouter deployments, or None to run the
    routers inside this replica."""

    def __init__(
        self,
        config: Config,
        router_handles: dict[str, Any] | None = None,
        storage: StorageSettings | None = None,
        writer: Any = None,
        local_models: dict[str, Any] | None = None,
        ui: Any = None,
    ):
        observability = self._observability = _observability(storage, writer)
        if router_handles:
            self._routers = DeploymentRouters(router_handles)
        else:
            self._routers = LocalRouters(config, observability, local_models)
        self._app = create_app(config, self._routers, observability, ui)
        self._in_process = httpx.AsyncClient(transport=httpx.ASGITransport(app=self._app), base_url="http://gateway")

    def __serve_build_asgi_app__(self):
        return self._app

    async def __del__(self):
        # Serve calls this on graceful shutdown: rows still held here go to the writer.
        if self._observability is not None:
            await self._observability.close()

    # Handle methods for the in-cluster clients: the same checks as HTTP, without HTTP.

    async def inference(self, payload: dict) -> dict:
        function_name, request = self._target(payload)
        if request.stream:
            raise InvalidRequest("Use `inference_stream` for streaming requests")
        return (await self._routers.infer(function_name, request)).model_dump(mode="json")

    async def inference_stream(self, payload: dict) -> AsyncIterator[bytes]:
        function_name, request = self._target(payload)
        async for event in self._routers.stream(function_name, request):
            yield event

    async def feedback(self, payload: dict) -> dict:
        feedback_id = await self._app.state.feedback.submit(parse_body(FeedbackRequest, payload))
        return {"feedback_id": str(feedback_id)}

    async def request(self, method: str, path: str, payload: dict | None) -> tuple[int, Any]:
        """Any JSON endpoint of the HTTP API (stored inferences, datasets, curation, replay)
        through the handle: (status, body)."""
        response = await self._in_process.request(method, path, json=payload)
        return response.status_code, response.json()

    def _target(self, payload: dict):
        function_name, request = parse_inference_request(payload)
        if not self._routers.knows(function_name):
            raise UnknownFunction(function_name)
        return function_name, request


class FunctionRouterReplica(FunctionRouter):
    """A FunctionRouter that reaches the ObservabilityWriter through its handle."""

    def __init__(
        self,
        config: Config,
        function_name: str,
        storage: StorageSettings | None = None,
        writer: Any = None,
        local_models: dict[str, Any] | None = None,
    ):
        models = model_registry(config, local_models)
        super().__init__(config, function_name, models, observability=_observability(storage, writer))

    async def __del__(self):
        if self.observability is not None:
            await self.observability.close()


GatewayDeployment = serve.deployment(
    serve.ingress()(Gateway), name="Gateway", max_ongoing_requests=1000, ray_actor_options=ACTOR_OPTIONS
)
FunctionRouterDeployment = serve.deployment(
    FunctionRouterReplica,
    max_ongoing_requests=1000,
    autoscaling_config=ROUTER_AUTOSCALING,
    ray_actor_options=ACTOR_OPTIONS,
)
# One replica: in embedded mode it is the only process that may open the chDB engine.
WriterDeployment = serve.deployment(
    ObservabilityWriterDeployment,
    name="ObservabilityWriter",
    num_replicas=1,
    max_ongoing_requests=10_000,
    ray_actor_options=ACTOR_OPTIONS,
)


UIDeployment = serve.deployment(UIServer, name="UI", num_replicas=1, ray_actor_options=ACTOR_OPTIONS)


def router_deployment_name(function_name: str) -> str:
    return "FunctionRouter-" + re.sub(r"[^A-Za-z0-9_-]", "_", function_name)


def build_application(
    config: Config, *, routers: str = "in_process", workdir: str | None = None, gateway_replicas: int = 1
) -> Application:
    """`in_process` (the default, the faster in bench/) runs the FunctionRouters inside the
    Gateway replica; `deployments` gives each function its own autoscaling deployment."""
    if routers not in ("deployments", "in_process"):
        raise ValueError(f"routers must be `deployments` or `in_process`, not `{routers}`")
    storage = StorageSettings.from_config(config, workdir)
    writer = WriterDeployment.bind(storage) if storage is not None else None
    local_models = bind_local_models(config.models)
    ui = UIDeployment.bind(config, storage, writer, local_models, config_hash=config_hash(config))
    gateway = GatewayDeployment.options(num_replicas=gateway_replicas)
    if routers == "in_process":
        return gateway.bind(config, None, storage, writer, local_models, ui)
    handles = {
        name: FunctionRouterDeployment.options(name=router_deployment_name(name)).bind(
            config, name, storage, writer, local_models
        )
        for name in [*config.functions, DEFAULT_FUNCTION]
    }
    return gateway.bind(config, handles, storage, writer, None, ui)


def build_app(args: dict[str, Any]) -> Application:
    """Entry point for Serve config files: `args: {config: PATH, routers: deployments|in_process}`."""
    unknown = set(args) - {"config", "routers"}
    if unknown:
        raise ValueError(f"unknown application args: {sorted(unknown)}")
    if "config" not in args:
        raise ValueError("application args need `config`: a tensorzero.toml path or glob")
    return build_application(load_config(args["config"]), routers=args.get("routers", "in_process"))
