"""The Serve application: a Gateway ingress, one FunctionRouter deployment per function, a
LocalModel deployment per self-hosted model, and the ObservabilityWriter. `build_app` is what
`serve run` / `serve deploy` import (see deployments/)."""

from __future__ import annotations

import re
from typing import Any

from ray import serve
from ray.serve import Application

from tensorzero_ray.api.gateway import config_hash
from tensorzero_ray.config import Config, load_config
from tensorzero_ray.config.functions import DEFAULT_FUNCTION
from tensorzero_ray.experimentation.controller import adaptive_experiments
from tensorzero_ray.serve.experiment_controller import ExperimentControllerDeployment
from tensorzero_ray.serve.function_router import FunctionRouterReplica
from tensorzero_ray.serve.gateway import Gateway
from tensorzero_ray.serve.local_embedding_model import bind_local_embedding_models
from tensorzero_ray.serve.local_model import bind_local_models
from tensorzero_ray.serve.observability_writer import ObservabilityWriterDeployment
from tensorzero_ray.store.dsn import is_embedded
from tensorzero_ray.store.observability import StorageSettings
from tensorzero_ray.ui.server import UIServer

APP_NAME = "tensorzero"
ROUTER_AUTOSCALING = {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 64}
# The gateway and routers wait on the network, not the CPU: a fraction of a core each lets a
# small machine hold every function's router. Override per deployment in the Serve YAML.
ACTOR_OPTIONS = {"num_cpus": 0.1}


GatewayDeployment = serve.deployment(
    serve.ingress()(Gateway), name="Gateway", max_ongoing_requests=1000, ray_actor_options=ACTOR_OPTIONS
)
FunctionRouterDeployment = serve.deployment(
    FunctionRouterReplica,
    max_ongoing_requests=1000,
    autoscaling_config=ROUTER_AUTOSCALING,
    ray_actor_options=ACTOR_OPTIONS,
)
# A sliver of the storage resource: the writer needs the node that has it, not all of it.
WRITER_RESOURCE_SHARE = 0.01
# One replica: in embedded mode it is the only process that may open the chDB engine.
WriterDeployment = serve.deployment(
    ObservabilityWriterDeployment,
    name="ObservabilityWriter",
    num_replicas=1,
    max_ongoing_requests=10_000,
    ray_actor_options=ACTOR_OPTIONS,
)


UIDeployment = serve.deployment(UIServer, name="UI", num_replicas=1, ray_actor_options=ACTOR_OPTIONS)
# One replica: the single place that decides an adaptive experiment's state.
ControllerDeployment = serve.deployment(
    ExperimentControllerDeployment,
    name="ExperimentController",
    num_replicas=1,
    max_ongoing_requests=10_000,
    ray_actor_options=ACTOR_OPTIONS,
)


def router_deployment_name(function_name: str) -> str:
    return "FunctionRouter-" + re.sub(r"[^A-Za-z0-9_-]", "_", function_name)


def build_application(
    config: Config,
    *,
    routers: str = "in_process",
    workdir: str | None = None,
    gateway_replicas: int = 1,
    writer_resource: str | None = None,
) -> Application:
    """`in_process` (the default, the faster in bench/) runs the FunctionRouters inside the
    Gateway replica; `deployments` gives each function its own autoscaling deployment.
    `writer_resource`: a custom resource that only the node with the durable disk offers; the
    ObservabilityWriter (and with it the embedded chDB's files) goes there. With a ClickHouse
    server DSN there is no ObservabilityWriter deployment: every replica writes for itself."""
    if routers not in ("deployments", "in_process"):
        raise ValueError(f"routers must be `deployments` or `in_process`, not `{routers}`")
    storage = StorageSettings.from_config(config, workdir)
    single_writer = storage is not None and is_embedded(storage.dsn)
    if writer_resource is not None and storage is not None and not single_writer:
        raise ValueError(
            "a writer resource places the embedded database's one writer; with a ClickHouse server "
            "every replica writes for itself, so drop --writer-resource"
        )
    writer_deployment = WriterDeployment
    if writer_resource is not None:
        placed = {**ACTOR_OPTIONS, "resources": {writer_resource: WRITER_RESOURCE_SHARE}}
        writer_deployment = WriterDeployment.options(ray_actor_options=placed)
    writer = writer_deployment.bind(storage) if single_writer else None
    local_models = {**bind_local_models(config.models), **bind_local_embedding_models(config.embedding_models)}
    experiments = (
        ControllerDeployment.bind(config, storage, writer)
        if storage is not None and adaptive_experiments(config)
        else None
    )
    ui = UIDeployment.bind(
        config, storage, writer, local_models, config_hash=config_hash(config), experiments=experiments
    )
    gateway = GatewayDeployment.options(num_replicas=gateway_replicas)
    if routers == "in_process":
        return gateway.bind(config, None, storage, writer, local_models, ui, experiments)
    handles = {
        name: FunctionRouterDeployment.options(name=router_deployment_name(name)).bind(
            config, name, storage, writer, local_models, experiments
        )
        for name in [*config.functions, DEFAULT_FUNCTION]
    }
    # The gateway still serves `/openai/v1/embeddings`, so it keeps the self-hosted models' handles.
    return gateway.bind(config, handles, storage, writer, local_models, ui, experiments)


def build_app(args: dict[str, Any]) -> Application:
    """Entry point for Serve config files: `args: {config: PATH, routers: deployments|in_process}`."""
    unknown = set(args) - {"config", "routers"}
    if unknown:
        raise ValueError(f"unknown application args: {sorted(unknown)}")
    if "config" not in args:
        raise ValueError("application args need `config`: a tensorzero.toml path or glob")
    return build_application(load_config(args["config"]), routers=args.get("routers", "in_process"))
