"""The whole `tensorzero.toml` as one pydantic model, and the checks that span tables."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tensorzero_ray.config.functions import (
    DEFAULT_FUNCTION,
    AdaptiveExperimentation,
    ChatFunctionConfig,
    EvaluationConfig,
    FunctionConfig,
    LlmJudgeEvaluator,
    MetricConfig,
    ToolConfig,
)
from tensorzero_ray.config.gateway import GatewayConfig
from tensorzero_ray.config.models import (
    AWSProviderBase,
    EmbeddingModelConfig,
    GCPVertexProviderBase,
    ModelConfig,
    ProviderTypeConfig,
    RayServeProviderConfig,
    parse_shorthand,
)
from tensorzero_ray.config.rate_limiting import RateLimitingConfig
from tensorzero_ray.config.variants import (
    BestOfNVariantConfig,
    ChainOfThoughtVariantConfig,
    ChatCompletionVariantConfig,
    DiclVariantConfig,
    MixtureOfNVariantConfig,
    variant_models,
)
from tensorzero_ray.errors import UnknownFunction

Problem = tuple[tuple[str, ...], str]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClickHouseConfig(Strict):
    disable_automatic_migrations: bool = False
    url: str | None = None  # tensorzero-ray: a DSN; TENSORZERO_CLICKHOUSE_URL wins when set


class PostgresConfig(Strict):
    enabled: bool | None = None
    connection_pool_size: int = 20
    inference_metadata_retention_days: int | None = None
    inference_data_retention_days: int | None = None
    inference_retention_days: int | None = None


class ObjectStorageConfig(Strict):
    type: Literal["s3_compatible", "filesystem", "disabled"]
    path: str | None = None
    endpoint: str | None = None
    bucket_name: str | None = None
    region: str | None = None
    allow_http: bool = False
    prefix: str | None = None


class Config(Strict):
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    clickhouse: ClickHouseConfig = Field(default_factory=ClickHouseConfig)
    postgres: PostgresConfig = Field(default_factory=PostgresConfig)
    rate_limiting: RateLimitingConfig = Field(default_factory=RateLimitingConfig)
    object_storage: ObjectStorageConfig | None = None
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    embedding_models: dict[str, EmbeddingModelConfig] = Field(default_factory=dict)
    provider_types: dict[str, ProviderTypeConfig] = Field(default_factory=dict)
    functions: dict[str, FunctionConfig] = Field(default_factory=dict)
    metrics: dict[str, MetricConfig] = Field(default_factory=dict)
    tools: dict[str, ToolConfig] = Field(default_factory=dict)
    evaluations: dict[str, EvaluationConfig] = Field(default_factory=dict)
    optimizers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    autopilot: dict[str, Any] = Field(default_factory=dict)

    def problems(self) -> list[Problem]:
        """Dangling references and rules no single table can check."""
        found: list[Problem] = []
        found += _model_problems(self)
        for name, function in self.functions.items():
            found += [(("functions", name, *loc), msg) for loc, msg in _function_problems(self, name, function)]
        if self.object_storage is not None and self.object_storage.type == "s3_compatible":
            found.append(
                (("object_storage", "type"), "`s3_compatible` object storage is not supported yet; use `filesystem`")
            )
        if (
            self.object_storage is not None
            and self.object_storage.type == "filesystem"
            and not self.object_storage.path
        ):
            found.append((("object_storage", "path"), "`filesystem` object storage needs `path`"))
        if self.gateway.export.otlp.traces.enabled and not os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            found.append(
                (
                    ("gateway", "export", "otlp", "traces", "enabled"),
                    "trace export needs OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (the collector's URL) in the environment",
                )
            )
        if self.gateway.auth.enabled and self.gateway.observability.enabled is False:
            found.append(
                (
                    ("gateway", "auth", "enabled"),
                    "API keys are stored in ClickHouse: authentication needs `gateway.observability.enabled` on",
                )
            )
        for name in self.metrics:
            if name in ("comment", "demonstration"):
                found.append((("metrics", name), f"metric name `{name}` is reserved"))
        for name, evaluation in self.evaluations.items():
            if evaluation.function_name not in self.functions:
                found.append(
                    ((("evaluations", name, "function_name")), f"unknown function `{evaluation.function_name}`")
                )
        from tensorzero_ray.evaluations.catalog import evaluator_problems  # it builds on this module

        found += evaluator_problems(self)
        return found

    def with_evaluators(self) -> "Config":
        """The evaluators' metrics and LLM judges' functions added, as TensorZero adds them:
        scores are feedback like any other, judges are functions like any other."""
        from tensorzero_ray.evaluations.catalog import evaluator_metrics, judge_functions

        self.metrics.update(evaluator_metrics(self))
        self.functions.update(judge_functions(self))
        return self

    def function(self, name: str) -> FunctionConfig:
        """A configured function, or the built-in `tensorzero::default` chat function; an
        unknown name is the caller's 404."""
        if name == DEFAULT_FUNCTION:
            return ChatFunctionConfig(type="chat")
        function = self.functions.get(name)
        if function is None:
            raise UnknownFunction(name)
        return function

    def has_model(self, name: str) -> bool:
        return name in self.models or parse_shorthand(name) is not None

    def has_embedding_model(self, name: str) -> bool:
        return name in self.embedding_models or parse_shorthand(name) is not None


def _model_problems(config: Config) -> list[Problem]:
    found: list[Problem] = []
    for name, model in config.models.items():
        if "::" in name:
            found.append((("models", name), f"model name `{name}` uses a reserved `::` prefix"))
        seen = set()
        for index, provider in enumerate(model.routing):
            if provider not in model.providers:
                found.append((("models", name, "routing", str(index)), f"routing names unknown provider `{provider}`"))
            if provider in seen:
                found.append(
                    (("models", name, "routing", str(index)), f"provider `{provider}` appears twice in routing")
                )
            seen.add(provider)
        for provider_name, provider in model.providers.items():
            if provider_name not in model.routing:
                found.append(
                    (
                        ("models", name, "providers", provider_name),
                        f"provider `{provider_name}` is not listed in `routing`",
                    )
                )
            if isinstance(provider, RayServeProviderConfig):
                found += [
                    (("models", name, "providers", provider_name, *loc), message)
                    for loc, message in _local_model_problems(provider)
                ]
            if isinstance(provider, AWSProviderBase):
                found += [
                    (("models", name, "providers", provider_name, *loc), message)
                    for loc, message in _aws_problems(provider)
                ]
            if isinstance(provider, GCPVertexProviderBase):
                found += [
                    (("models", name, "providers", provider_name, *loc), message)
                    for loc, message in _gcp_credential_problems(provider, config.provider_types.get(provider.type))
                ]
    for name, model in config.embedding_models.items():
        for index, provider in enumerate(model.routing):
            if provider not in model.providers:
                found.append(
                    (("embedding_models", name, "routing", str(index)), f"routing names unknown provider `{provider}`")
                )
    return found


def _aws_problems(provider: AWSProviderBase) -> list[Problem]:
    from tensorzero_ray.providers.aws_auth import credential_problem, region_problem

    found: list[Problem] = []
    region = region_problem(provider.region, provider.allow_auto_detect_region)
    if region is not None:
        found.append((("region",), region))
    credentials = credential_problem(provider)
    if credentials is not None:
        found.append(((credentials[0],), credentials[1]))
    return found


def _gcp_credential_problems(provider: GCPVertexProviderBase, type_config: Any) -> list[Problem]:
    """Credentials that can be read at start-up must work; the message never shows them."""
    from tensorzero_ray.providers.gcp_credentials import (
        DEFAULT_CREDENTIAL_LOCATION,
        CredentialsProblem,
        check_credential_location,
    )

    try:
        type_default = type_config.defaults.credential_location if type_config is not None else None
        check_credential_location(provider.credential_location or type_default or DEFAULT_CREDENTIAL_LOCATION)
    except CredentialsProblem as exc:
        return [(("credential_location",), f"unusable credentials: {exc}")]
    return []


def _local_model_problems(provider: RayServeProviderConfig) -> list[Problem]:
    """A model directory must exist and hold a model; hub names are checked when loaded."""
    found: list[Problem] = []
    path = Path(provider.model_name)
    if path.is_absolute():
        if not path.is_dir():
            found.append((("model_name",), f"model directory `{path}` does not exist"))
        elif not (path / "config.json").is_file():
            found.append((("model_name",), f"`{path}` is not a model directory (it has no config.json)"))
    if provider.engine == "vllm" and importlib.util.find_spec("vllm") is None:
        found.append((("engine",), "engine `vllm` needs the vllm package (GPU machines); use `transformers`"))
    return found


def _function_problems(config: Config, name: str, function: Any) -> list[Problem]:
    found: list[Problem] = []
    if name.startswith("tensorzero::"):
        found.append(((), f"function name `{name}` uses the reserved `tensorzero::` prefix"))
    variant_names = set(function.variants)
    schema_names = set(function.schema_files())
    weighted = [v for v in function.variants.values() if v.weight is not None]
    if weighted and function.experimentation is not None:
        found.append(
            (("experimentation",), "per-variant `weight` cannot be combined with an `[experimentation]` section")
        )

    for variant_name, variant in function.variants.items():
        where = ("variants", variant_name)
        for loc, model in variant_models(variant):
            if not config.has_model(model):
                found.append(((*where, *loc), f"unknown model `{model}`"))
        if isinstance(variant, ChatCompletionVariantConfig):
            templates = set(variant.template_texts())
            for schema in sorted(schema_names - templates):
                found.append(
                    (where, f"the function has a `{schema}` schema, so this variant needs a `{schema}` template")
                )
        if isinstance(variant, (BestOfNVariantConfig, MixtureOfNVariantConfig)):
            for index, candidate in enumerate(variant.candidates):
                if candidate not in variant_names:
                    found.append(((*where, "candidates", str(index)), f"unknown variant `{candidate}`"))
                elif isinstance(function.variants[candidate], (BestOfNVariantConfig, MixtureOfNVariantConfig)):
                    found.append(
                        (
                            (*where, "candidates", str(index)),
                            f"candidate `{candidate}` is itself a best-of-n or mixture-of-n variant; use its candidates",
                        )
                    )
        if isinstance(variant, ChainOfThoughtVariantConfig) and isinstance(function, ChatFunctionConfig):
            found.append(((*where, "type"), "`experimental_chain_of_thought` serves JSON functions only"))
        if isinstance(variant, DiclVariantConfig) and variant.k < 1:
            found.append(((*where, "k"), "`k` must be at least 1"))
        if isinstance(variant, DiclVariantConfig) and isinstance(function, ChatFunctionConfig) and function.tools:
            found.append(((*where, "type"), "DICL variants do not serve functions with tools (as in TensorZero)"))
        if isinstance(variant, DiclVariantConfig) and not config.has_embedding_model(variant.embedding_model):
            found.append(((*where, "embedding_model"), f"unknown embedding model `{variant.embedding_model}`"))

    if isinstance(function, ChatFunctionConfig):
        for index, tool in enumerate(function.tools):
            if tool not in config.tools:
                found.append((("tools", str(index)), f"unknown tool `{tool}`"))

    if function.experimentation is not None:
        found += _experimentation_problems(config, ("experimentation",), function.experimentation, variant_names)
        for ns, sub in function.experimentation.namespaces.items():
            found += _experimentation_problems(config, ("experimentation", "namespaces", ns), sub, variant_names)

    for evaluator_name, evaluator in function.evaluators.items():
        if isinstance(evaluator, LlmJudgeEvaluator):
            for judge_name, judge in evaluator.variants.items():
                if not config.has_model(judge.model):
                    found.append(
                        (
                            ("evaluators", evaluator_name, "variants", judge_name, "model"),
                            f"unknown model `{judge.model}`",
                        )
                    )
    return found


def _experimentation_problems(config, where, experimentation, variant_names) -> list[Problem]:
    found: list[Problem] = []
    candidates = experimentation.candidate_variants or []
    candidate_names = list(candidates) if not isinstance(candidates, dict) else list(candidates.keys())
    for index, candidate in enumerate(candidate_names):
        if candidate not in variant_names:
            found.append(
                (
                    (*where, "candidate_variants", str(index) if not isinstance(candidates, dict) else candidate),
                    f"unknown variant `{candidate}`",
                )
            )
    if len(set(candidate_names)) != len(candidate_names):
        found.append(((*where, "candidate_variants"), "a variant is listed twice"))
    for index, fallback in enumerate(experimentation.fallback_variants):
        if fallback not in variant_names:
            found.append(((*where, "fallback_variants", str(index)), f"unknown variant `{fallback}`"))
        if fallback in candidate_names:
            found.append(
                ((*where, "fallback_variants", str(index)), f"variant `{fallback}` is both a candidate and a fallback")
            )
    if isinstance(experimentation, AdaptiveExperimentation):
        if experimentation.metric not in config.metrics:
            found.append(((*where, "metric"), f"unknown metric `{experimentation.metric}`"))
        if experimentation.min_prob * len(candidate_names) > 1:
            found.append(
                (
                    (*where, "min_prob"),
                    f"min_prob {experimentation.min_prob:g} x {len(candidate_names)} candidates is above 1",
                )
            )
    elif (
        isinstance(candidates, dict)
        and candidates
        and not any(w > 0 for w in candidates.values())
        and not experimentation.fallback_variants
    ):
        found.append(((*where, "candidate_variants"), "needs at least one positive weight or a fallback variant"))
    return found
