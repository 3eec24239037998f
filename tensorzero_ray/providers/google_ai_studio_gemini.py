"""Google AI Studio's Gemini API: the Gemini wire format behind an API key."""

from __future__ import annotations

import urllib.parse

from tensorzero_ray.providers.base import CallContext
from tensorzero_ray.providers.gemini import GeminiProvider

DEFAULT_API_BASE = "https://generativelanguage.googleapis.com/v1beta/"


class GoogleAIStudioGeminiProvider(GeminiProvider):
    provider_type = "google_ai_studio_gemini"

    def url(self, stream: bool) -> str:
        base = (self.config.api_base or DEFAULT_API_BASE).rstrip("/")
        model = urllib.parse.quote(self.config.model_name, safe="")
        if stream:
            return f"{base}/models/{model}:streamGenerateContent?alt=sse"
        return f"{base}/models/{model}:generateContent"

    async def auth_headers(self, ctx: CallContext) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        key = self.api_key("env::GOOGLE_AI_STUDIO_API_KEY", ctx)
        if key:
            headers["x-goog-api-key"] = key
        return headers
