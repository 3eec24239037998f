"""Services that speak OpenAI's wire format: one class each, differing in base URL and key."""

from __future__ import annotations

from typing import Any

from tensorzero_ray.config.credentials import (
    CredentialLocation,
    CredentialWithFallback,
    resolve_credential,
)
from tensorzero_ray.errors import InvalidRequest
from tensorzero_ray.providers.base import CallContext
from tensorzero_ray.providers.openai import OpenAIChatCompletions


class TogetherProvider(OpenAIChatCompletions):
    provider_type = "together"
    default_api_base = "https://api.together.xyz/v1/"
    default_key_location = "env::TOGETHER_API_KEY"


class FireworksProvider(OpenAIChatCompletions):
    provider_type = "fireworks"
    default_api_base = "https://api.fireworks.ai/inference/v1/"
    default_key_location = "env::FIREWORKS_API_KEY"


class GroqProvider(OpenAIChatCompletions):
    provider_type = "groq"
    default_api_base = "https://api.groq.com/openai/v1/"
    default_key_location = "env::GROQ_API_KEY"


class DeepSeekProvider(OpenAIChatCompletions):
    provider_type = "deepseek"
    default_api_base = "https://api.deepseek.com/v1/"
    default_key_location = "env::DEEPSEEK_API_KEY"


class XAIProvider(OpenAIChatCompletions):
    provider_type = "xai"
    default_api_base = "https://api.x.ai/v1/"
    default_key_location = "env::XAI_API_KEY"


class OpenRouterProvider(OpenAIChatCompletions):
    provider_type = "openrouter"
    default_api_base = "https://openrouter.ai/api/v1/"
    default_key_location = "env::OPENROUTER_API_KEY"


class HyperbolicProvider(OpenAIChatCompletions):
    provider_type = "hyperbolic"
    default_api_base = "https://api.hyperbolic.xyz/v1/"
    default_key_location = "env::HYPERBOLIC_API_KEY"


class MistralProvider(OpenAIChatCompletions):
    provider_type = "mistral"
    default_api_base = "https://api.mistral.ai/v1/"
    default_key_location = "env::MISTRAL_API_KEY"


class _SelfHosted(OpenAIChatCompletions):
    """Servers users run themselves: when the default key is not set, send none."""

    def api_key(self, default: CredentialLocation, ctx: CallContext) -> str | None:
        if self.config.api_key_location is None and default != "none":
            default = CredentialWithFallback(default=default, fallback="none")
        return super().api_key(default, ctx)


class VLLMProvider(_SelfHosted):
    provider_type = "vllm"
    default_key_location = "env::VLLM_API_KEY"


class SGLangProvider(_SelfHosted):
    provider_type = "sglang"
    default_key_location = "none"


class TGIProvider(_SelfHosted):
    provider_type = "tgi"
    default_key_location = "none"

    def model_field(self) -> dict[str, Any]:
        return {"model": self.config.model_name or "tgi"}


class AzureProvider(OpenAIChatCompletions):
    """Azure OpenAI: the deployment is in the URL and the key goes in `api-key`."""

    provider_type = "azure"
    supports_custom_tools = True
    default_key_location = "env::AZURE_API_KEY"
    api_version = "2024-10-21"

    def url(self, ctx: CallContext) -> str:
        return self._deployment_url(ctx, "chat/completions")

    def embeddings_url(self, ctx: CallContext) -> str:
        return self._deployment_url(ctx, "embeddings")

    def _deployment_url(self, ctx: CallContext, operation: str) -> str:
        endpoint = self.config.endpoint
        if endpoint.startswith(("env::", "dynamic::")):
            secret = resolve_credential(endpoint, ctx.credentials, self.provider_type)
            if secret is None:
                raise InvalidRequest("Azure endpoint is not set")
            endpoint = secret.get_secret_value()
        return (
            f"{endpoint.rstrip('/')}/openai/deployments/{self.config.deployment_id}"
            f"/{operation}?api-version={self.api_version}"
        )

    def headers(self, ctx: CallContext) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        key = self.api_key(self.default_key_location, ctx)
        if key:
            headers["api-key"] = key
        return headers

    def model_field(self) -> dict[str, Any]:
        return {}

    def model_label(self) -> str:
        return self.config.deployment_id
