"""The UI's Serve deployment: the UI app behind one handle method, so the Gateway can pass
`/ui/...` requests on to it within the same Serve application. It owns its own in-process
routers for dry runs ("try with another variant"), which never write."""

from __future__ import annotations

from typing import Any

import httpx

from tensorzero_ray.config import Config
from tensorzero_ray.functions.routers import LocalRouters
from tensorzero_ray.store.observability import ObservabilityClient, StorageSettings
from tensorzero_ray.types import InferenceRequest, InferenceResponse
from tensorzero_ray.ui.app import create_ui_app
from tensorzero_ray.ui.security import SECURITY_HEADERS

PASSED_HEADERS = frozenset(
    {
        "content-type",
        "content-disposition",
        "location",
        "cache-control",
        "content-length",
        "last-modified",
        "etag",
        "set-cookie",
        *SECURITY_HEADERS,
    }
)


class UIServer:
    def __init__(
        self,
        config: Config,
        storage: StorageSettings | None = None,
        writer: Any = None,
        local_models: dict[str, Any] | None = None,
        *,
        config_hash: str = "",
        experiments: Any = None,
    ):
        observability = ObservabilityClient(storage, writer) if storage is not None else None
        self._config = config
        self._local_models = local_models
        self._routers: LocalRouters | None = None
        self.app = create_ui_app(
            config, observability, infer=self._infer, config_hash=config_hash, experiments=experiments
        )
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://ui")

    async def _infer(self, function_name: str, request: InferenceRequest) -> InferenceResponse:
        # Built on first use: most UI replicas never run a dry-run inference.
        if self._routers is None:
            self._routers = LocalRouters(self._config, None, self._local_models)
        return await self._routers.infer(function_name, request)

    async def handle(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """One HTTP request to the UI: (status, headers, body)."""
        url = path + (f"?{query}" if query else "")
        response = await self._client.request(method, url, headers=headers, content=body)
        kept = [(k, v) for k, v in response.headers.multi_items() if k.lower() in PASSED_HEADERS]
        return response.status_code, kept, response.content
