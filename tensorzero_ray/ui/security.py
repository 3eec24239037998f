"""The UI's guard: pages only for hosts it is meant to be reached by (DNS rebinding), forms
only from its own pages (an Origin check plus a double-submit token), bounded bodies, and
headers that keep pages out of frames and scripts to our own file."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlsplit

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSRF_COOKIE = "tzray_csrf"
CSRF_FIELD = "csrf_token"
MAX_UI_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}

# The token of the request being rendered: every form on the page carries it.
csrf_token: ContextVar[str] = ContextVar("csrf_token", default="")

Refusal = Callable[[int, str], Response]


def host_name(host: str) -> str:
    """`Host` without its port (IPv6 literals keep their address)."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class UISecurity:
    """Pure ASGI middleware; `refuse(status, message)` renders the UI's error page."""

    def __init__(self, app: ASGIApp, refuse: Refusal, allowed_hosts: list[str] | None = None):
        self.app = app
        self.refuse = refuse
        self.allowed_hosts = {h.lower() for h in (*DEFAULT_HOSTS, *(allowed_hosts or []))}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if "*" not in self.allowed_hosts and host_name(host).lower() not in self.allowed_hosts:
            await self._refuse(scope, receive, send, 400, f"Host `{host}` is not one this UI is served on")
            return
        cookie = SimpleCookie(headers.get("cookie", ""))
        token = cookie[CSRF_COOKIE].value if CSRF_COOKIE in cookie else ""
        fresh = not (len(token) == 43 and token.replace("-", "").replace("_", "").isalnum())
        if fresh:
            token = secrets.token_urlsafe(32)
        if scope["method"] not in SAFE_METHODS:
            problem = self._cross_site(headers, host)
            body = b""
            if problem is None:
                body, problem = await _read_body(receive)
            if problem is None and not fresh:
                sent = dict(parse_qsl(body.decode("utf-8", errors="replace"))).get(CSRF_FIELD, "")
                if not hmac.compare_digest(sent, token):
                    problem = (403, "The form's security token does not match: reload the page and submit again")
            elif problem is None:
                problem = (403, "The form's security token is missing: reload the page and submit again")
            if problem is not None:
                await self._refuse(scope, receive, send, *problem, token if fresh else None)
                return
            receive = _replay(body)
        csrf_token.set(token)
        await self.app(scope, receive, _with_headers(send, token if fresh else None))

    @staticmethod
    def _cross_site(headers: Headers, host: str) -> tuple[int, str] | None:
        source = headers.get("origin") or headers.get("referer")
        if not source or source == "null":
            return 403, "Forms are accepted only from this UI's own pages (no Origin or Referer was sent)"
        if urlsplit(source).netloc.lower() != host.lower():
            return 403, "Forms are accepted only from this UI's own pages (cross-site request refused)"
        return None

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, message: str, token: str | None = None
    ) -> None:
        await self.refuse(status, message)(scope, receive, _with_headers(send, token))


async def _read_body(receive: Receive) -> tuple[bytes, tuple[int, str] | None]:
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > MAX_UI_BODY_BYTES:
            return b"", (413, f"The form is larger than {MAX_UI_BODY_BYTES // (1024 * 1024)} MiB")
        if not message.get("more_body", False):
            return bytes(body), None


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _with_headers(send: Send, new_token: str | None) -> Callable[[Message], Awaitable[None]]:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            raw = list(message.get("headers", []))
            present = {name.lower() for name, _ in raw}
            raw += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k.encode() not in present]
            if new_token is not None:
                cookie = f"{CSRF_COOKIE}={new_token}; Path=/; HttpOnly; SameSite=Strict"
                raw.append((b"set-cookie", cookie.encode()))
            message = {**message, "headers": raw}
        await send(message)

    return wrapped
