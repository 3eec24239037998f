"""The interface every provider implements, and the plumbing they share: one pooled HTTP
client per provider, credential lookup, and extra_body/extra_headers patches."""

from __future__ import annotations

import abc
import functools
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import yarl

from tensorzero_ray.config.credentials import CredentialLocation, resolve_credential
from tensorzero_ray.errors import NotImplementedYet, ProviderError, UnsupportedModelProviderForBatchInference
from tensorzero_ray.providers.batch import BatchPoll, BatchStart
from tensorzero_ray.types import ExtraBodyEntry, ExtraHeaderEntry, Text, ToolCallOutput
from tensorzero_ray.types.model import ModelInferenceRequest, ProviderChunk, ProviderResponse


@dataclass
class CallContext:
    """Per-request facts a provider needs beyond the rendered request."""

    credentials: dict[str, str] = field(default_factory=dict, repr=False)
    extra_body: list[ExtraBodyEntry] = field(default_factory=list)
    extra_headers: list[ExtraHeaderEntry] = field(default_factory=list)
    raw_request: str = ""


class Provider(abc.ABC):
    """Translates a `ModelInferenceRequest` into one provider's wire format and back."""

    provider_type: str = ""
    # OpenAI's free-form `custom` tools exist only in OpenAI's API.
    supports_custom_tools = False

    def __init__(self, name: str, config: Any, *, timeout_s: float = 900.0):
        self.name = name
        self.config = config
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self.type_defaults: Any = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """aiohttp, not httpx: a pooled keep-alive call costs a tenth of the CPU
        (bench/http_client.py). The timeout bounds the wait for each read, as a provider
        may stream for long."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1000, limit_per_host=0),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=min(self._timeout_s, 30.0), sock_read=self._timeout_s
                ),
                # Not `trust_env`: it reads ~/.netrc and the environment on every request;
                # the proxy settings are read once instead (`proxy_for`).
                trust_env=False,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @abc.abstractmethod
    async def infer(self, request: ModelInferenceRequest, ctx: CallContext) -> ProviderResponse: ...

    @abc.abstractmethod
    def stream(self, request: ModelInferenceRequest, ctx: CallContext) -> AsyncIterator[ProviderChunk]:
        """An async iterator of chunks; errors before the first chunk are raised from it."""

    async def embed(
        self, inputs: list[Any], dimensions: int | None, ctx: CallContext
    ) -> tuple[list, int | None, str, Any]:
        """(vectors, input tokens, raw response, parsed raw response) for embedding models."""
        raise NotImplementedYet(f"Provider type `{self.provider_type}` does not serve embeddings")

    async def start_batch(self, requests: list[tuple[str, ModelInferenceRequest]], ctx: CallContext) -> BatchStart:
        """Submit (element id, request) pairs to the provider's batch API."""
        raise UnsupportedModelProviderForBatchInference(f"Provider type `{self.provider_type}` has no batch API")

    async def poll_batch(
        self, params: dict[str, Any], requests: dict[str, ModelInferenceRequest], ctx: CallContext
    ) -> BatchPoll:
        """`requests`: the elements as sent, by id (their shape decides how answers are read)."""
        raise UnsupportedModelProviderForBatchInference(f"Provider type `{self.provider_type}` cannot poll batches")

    def api_key(self, default: CredentialLocation, ctx: CallContext) -> str | None:
        """The provider's own location, else `[provider_types.<type>.defaults]`, else the type's."""
        type_default = getattr(self.type_defaults, "api_key_location", None)
        location = self.config.api_key_location or type_default or default
        secret = resolve_credential(location, ctx.credentials, self.provider_type)
        return None if secret is None else secret.get_secret_value()

    def patch_body(self, body: dict[str, Any], request: ModelInferenceRequest, ctx: CallContext) -> dict:
        """extra_body from variant < provider config < request (spec §3.16)."""
        for entry in [*request.extra_body, *self.config.extra_body, *ctx.extra_body]:
            apply_pointer(body, entry.pointer, entry.value, delete=bool(entry.delete))
        return body

    def patch_headers(self, headers: dict[str, str], request: ModelInferenceRequest, ctx: CallContext) -> dict:
        for entry in [*request.extra_headers, *self.config.extra_headers, *ctx.extra_headers]:
            if entry.delete:
                headers.pop(entry.name, None)
            elif entry.value is not None:
                headers[entry.name] = entry.value
        return headers

    def error(self, message: str, **kwargs) -> ProviderError:
        return ProviderError(message, provider_type=self.provider_type, **kwargs)

    async def post_json(self, url: str, body: dict, headers: dict[str, str]) -> tuple[str, str, Any]:
        """POST and return (raw request, raw response, parsed JSON); HTTP failures raise
        `ProviderError` with the upstream status."""
        raw_request = orjson.dumps(body).decode()
        raw_response = await self.send("POST", url, headers, raw_request, content=raw_request)
        return raw_request, raw_response, self.parse_json(raw_request, raw_response)

    async def send(
        self,
        method: str,
        url: str | yarl.URL,
        headers: dict[str, str],
        raw_request: str = "",
        *,
        content: str | bytes | None = None,
        form: dict[str, str | tuple[str, bytes, str]] | None = None,
    ) -> str:
        """The response's text, with secrets scrubbed; `raw_request` is what errors report.
        `form`: multipart fields, a file as (file name, bytes, content type)."""
        body = multipart(form) if form is not None else content
        try:
            async with self.session.request(
                method, url, headers=headers, data=body, proxy=proxy_for(str(url))
            ) as response:
                status, text = response.status, (await response.read()).decode(errors="replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self.transport_error(exc, raw_request) from None
        raw_response = scrub_secrets(text, headers)
        if status >= 400:
            raise self.http_error(status, raw_request, raw_response)
        return raw_response

    def parse_json(self, raw_request: str, raw_response: str) -> Any:
        try:
            return orjson.loads(raw_response)
        except orjson.JSONDecodeError:
            raise self.error(
                f"Error from {self.provider_type} server: response is not JSON",
                raw_request=raw_request,
                raw_response=raw_response,
            ) from None

    def transport_error(self, exc: Exception, raw_request: str) -> ProviderError:
        detail = "request timed out" if isinstance(exc, TimeoutError) else repr(exc)
        return self.error(f"Error from {self.provider_type} client: {detail}", raw_request=raw_request)

    def http_error(self, status: int, raw_request: str, raw_response: str) -> ProviderError:
        return self.error(
            f"Error from {self.provider_type} server: HTTP {status}: {raw_response[:1000]}",
            status_code=status if status in (400, 401, 403, 404, 408, 429) else 502,
            raw_request=raw_request,
            raw_response=raw_response,
            rate_limited=status == 429,
        )

    async def sse_events(self, url: str, body: dict, headers: dict[str, str], ctx: CallContext) -> AsyncIterator[str]:
        """POST, then yield each SSE `data:` payload; the first `anext` raises on HTTP errors."""
        raw_request = ctx.raw_request = orjson.dumps(body).decode()
        try:
            async with self.session.post(
                url, data=raw_request.encode(), headers=headers, proxy=proxy_for(url)
            ) as response:
                if response.status >= 400:
                    text = scrub_secrets((await response.read()).decode(errors="replace"), headers)
                    raise self.http_error(response.status, raw_request, text)
                data: list[str] = []
                async for line in _lines(response.content):
                    if line.startswith("data:"):
                        data.append(scrub_secrets(line[5:].lstrip(" "), headers))
                    elif not line and data:
                        yield "\n".join(data)
                        data = []
                if data:
                    yield "\n".join(data)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self.transport_error(exc, raw_request) from None


@functools.cache
def _environment_proxies() -> dict[str, str]:
    return urllib.request.getproxies_environment()


@functools.lru_cache(maxsize=256)
def _proxy_for_host(scheme: str, host: str) -> str | None:
    proxies = _environment_proxies()
    if not proxies or urllib.request.proxy_bypass_environment(host, proxies):
        return None
    return proxies.get(scheme) or proxies.get("all")


def proxy_for(url: str) -> str | None:
    """The proxy that HTTP(S)_PROXY, ALL_PROXY and NO_PROXY name for this URL, as httpx and
    curl read them."""
    parsed = urllib.parse.urlsplit(url)
    return _proxy_for_host(parsed.scheme, parsed.hostname or "")


async def _lines(body: aiohttp.StreamReader) -> AsyncIterator[str]:
    """The body's lines, however long (aiohttp's own line reader caps their length)."""
    pending: list[bytes] = []
    async for piece in body.iter_any():
        if b"\n" not in piece:
            pending.append(piece)
            continue
        pending.append(piece)
        *lines, rest = b"".join(pending).split(b"\n")
        pending = [rest] if rest else []
        for line in lines:
            yield line.rstrip(b"\r").decode(errors="replace")
    if pending:
        yield b"".join(pending).rstrip(b"\r").decode(errors="replace")


def multipart(fields: dict[str, str | tuple[str, bytes, str]]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in fields.items():
        if isinstance(value, tuple):
            filename, data, content_type = value
            form.add_field(name, data, filename=filename, content_type=content_type)
        else:
            form.add_field(name, value)
    return form


SECRET_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "x-goog-api-key", "proxy-authorization"})
REDACTED = "[REDACTED]"


def scrub_secrets(text: str, headers: dict[str, str]) -> str:
    """Credentials the gateway sent never come back out of it: a provider that echoes its
    key in an error or a response has that key replaced before the text is returned, logged
    or stored."""
    secrets = set()
    for name, value in headers.items():
        if name.lower() in SECRET_HEADERS and value:
            secrets.add(value)
            scheme, _, credential = value.partition(" ")
            if credential and scheme.lower() in ("bearer", "basic", "token"):
                secrets.add(credential)
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 8 and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def respond_tool_as_text(content: list) -> list:
    """A forced `respond` tool call (JSON functions, json_mode = "tool") is the JSON output:
    its arguments become the text."""
    for block in content:
        if isinstance(block, ToolCallOutput):
            return [Text(text=block.raw_arguments)]
    return content


def apply_pointer(body: dict[str, Any], pointer: str, value: Any, *, delete: bool = False) -> None:
    """Set or delete at a JSON pointer, creating intermediate objects; `-` appends."""
    if not pointer.startswith("/"):
        raise ValueError(f"JSON pointer must start with `/`: {pointer}")
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]
    node: Any = body
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        if delete:
            if last != "-" and int(last) < len(node):
                node.pop(int(last))
        elif last == "-":
            node.append(value)
        else:
            node[int(last)] = value
    elif delete:
        node.pop(last, None)
    else:
        node[last] = value


def lookup_pointer(data: Any, pointer: str) -> Any:
    """The value at a JSON pointer, or None when absent."""
    node = data
    for part in pointer.lstrip("/").split("/") if pointer else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node
