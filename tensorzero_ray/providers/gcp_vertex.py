"""What the Vertex AI providers share: the regional endpoint of a model or a deployed
endpoint, and a bearer token from service-account credentials."""

from __future__ import annotations

from tensorzero_ray.providers.base import CallContext
from tensorzero_ray.providers.gcp_credentials import DEFAULT_CREDENTIAL_LOCATION, GCPTokens


class VertexEndpoint:
    """Mixed into a provider whose config is a `GCPVertexProviderBase`."""

    provider_type: str
    config: object
    type_defaults: object
    _tokens: GCPTokens | None = None

    def vertex_url(self, publisher: str, method: str) -> str:
        config = self.config
        location = config.location
        host = "aiplatform.googleapis.com" if location == "global" else f"{location}-aiplatform.googleapis.com"
        base = (config.api_base or f"https://{host}/v1/").rstrip("/")
        prefix = f"{base}/projects/{config.project_id}/locations/{location}"
        if config.endpoint_id is not None:
            return f"{prefix}/endpoints/{config.endpoint_id}:{method}"
        return f"{prefix}/publishers/{publisher}/models/{config.model_id}:{method}"

    async def bearer_headers(self, ctx: CallContext) -> dict[str, str]:
        if self._tokens is None:
            type_default = getattr(self.type_defaults, "credential_location", None)
            location = self.config.credential_location or type_default or DEFAULT_CREDENTIAL_LOCATION
            self._tokens = GCPTokens(location, self.provider_type)
        token = await self._tokens.token(ctx.credentials)
        return {"content-type": "application/json", "authorization": f"Bearer {token}"}
