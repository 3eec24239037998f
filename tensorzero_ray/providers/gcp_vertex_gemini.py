"""Gemini on GCP Vertex AI."""

from __future__ import annotations

from tensorzero_ray.providers.base import CallContext
from tensorzero_ray.providers.gcp_vertex import VertexEndpoint
from tensorzero_ray.providers.gemini import GeminiProvider


class GCPVertexGeminiProvider(VertexEndpoint, GeminiProvider):
    provider_type = "gcp_vertex_gemini"

    def url(self, stream: bool) -> str:
        if stream:
            return self.vertex_url("google", "streamGenerateContent") + "?alt=sse"
        return self.vertex_url("google", "generateContent")

    async def auth_headers(self, ctx: CallContext) -> dict[str, str]:
        return await self.bearer_headers(ctx)
