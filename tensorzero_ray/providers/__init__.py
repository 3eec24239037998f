"""One module per provider type; `build_provider` maps a provider config to its translator."""

from __future__ import annotations

from typing import Any

from tensorzero_ray.providers.anthropic import AnthropicProvider
from tensorzero_ray.providers.aws_bedrock import AWSBedrockProvider
from tensorzero_ray.providers.aws_sagemaker import AWSSageMakerProvider
from tensorzero_ray.providers.base import CallContext, Provider
from tensorzero_ray.providers.dummy import DummyProvider
from tensorzero_ray.providers.gcp_vertex_anthropic import GCPVertexAnthropicProvider
from tensorzero_ray.providers.gcp_vertex_gemini import GCPVertexGeminiProvider
from tensorzero_ray.providers.google_ai_studio_gemini import GoogleAIStudioGeminiProvider
from tensorzero_ray.providers.openai_batch import OpenAIProvider
from tensorzero_ray.providers.openai_compatible import (
    AzureProvider,
    DeepSeekProvider,
    FireworksProvider,
    GroqProvider,
    HyperbolicProvider,
    MistralProvider,
    OpenRouterProvider,
    SGLangProvider,
    TGIProvider,
    TogetherProvider,
    VLLMProvider,
    XAIProvider,
)
from tensorzero_ray.providers.openai_responses import OpenAIResponsesProvider
from tensorzero_ray.providers.ray_serve import RayServeProvider

PROVIDERS: dict[str, type[Provider]] = {
    cls.provider_type: cls
    for cls in (
        OpenAIProvider,
        AnthropicProvider,
        AWSBedrockProvider,
        AWSSageMakerProvider,
        GoogleAIStudioGeminiProvider,
        GCPVertexGeminiProvider,
        GCPVertexAnthropicProvider,
        DummyProvider,
        AzureProvider,
        DeepSeekProvider,
        FireworksProvider,
        GroqProvider,
        HyperbolicProvider,
        MistralProvider,
        OpenRouterProvider,
        SGLangProvider,
        TGIProvider,
        TogetherProvider,
        VLLMProvider,
        XAIProvider,
        RayServeProvider,
    )
}


def build_provider(
    name: str, config: Any, *, timeout_s: float, local_handle: Any = None, type_defaults: Any = None
) -> Provider:
    """`local_handle`: the Serve handle of the deployment hosting a `ray_serve` provider.
    `type_defaults`: `[provider_types.<type>.defaults]`, the credential location used where
    the provider names none."""
    try:
        cls = PROVIDERS[config.type]
    except KeyError:
        raise ValueError(f"provider type `{config.type}` is not supported") from None
    if cls is RayServeProvider:
        provider: Provider = RayServeProvider(name, config, timeout_s=timeout_s, handle=local_handle)
    elif config.type == "openai" and getattr(config, "api_type", None) == "responses":
        provider = OpenAIResponsesProvider(name, config, timeout_s=timeout_s)
    else:
        provider = cls(name, config, timeout_s=timeout_s)
    provider.type_defaults = type_defaults
    return provider


__all__ = ["CallContext", "PROVIDERS", "Provider", "build_provider"]
