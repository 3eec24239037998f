"""Anthropic's models on GCP Vertex AI: the Messages API at a Vertex URL, with the model in
the URL and Vertex's `anthropic_version` in the body."""

from __future__ import annotations

from typing import Any

from tensorzero_ray.providers.anthropic import AnthropicProvider
from tensorzero_ray.providers.base import CallContext
from tensorzero_ray.providers.gcp_vertex import VertexEndpoint

VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"


class GCPVertexAnthropicProvider(VertexEndpoint, AnthropicProvider):
    provider_type = "gcp_vertex_anthropic"

    def url(self, stream: bool) -> str:
        return self.vertex_url("anthropic", "streamRawPredict" if stream else "rawPredict")

    @property
    def model_name(self) -> str:
        return self.config.model_id or self.config.endpoint_id

    def model_fields(self) -> dict[str, Any]:
        return {"anthropic_version": VERTEX_ANTHROPIC_VERSION}

    async def request_headers(self, ctx: CallContext) -> dict[str, str]:
        return await self.bearer_headers(ctx)
