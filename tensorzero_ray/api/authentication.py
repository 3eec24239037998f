"""`[gateway.auth] enabled = true`: every route but `/health` and `/status` needs an API key,
as `Authorization: Bearer`; the web UI takes it once on a login page and keeps it in an
`HttpOnly`, `SameSite=Strict` session cookie. The key's public id tags what the request
stores (`tensorzero::api_key_public_id`)."""

from __future__ import annotations

import html
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, quote, urlsplit

from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tensorzero_ray.api.http_io import ErrorResponses
from tensorzero_ray.auth import ApiKeys, Unauthenticated
from tensorzero_ray.auth.request_key import API_KEY_PUBLIC_ID

OPEN_PATHS = frozenset({"/health", "/status"})
SESSION_COOKIE = "tzray_session"
LOGIN = "/ui/login"
MAX_LOGIN_BODY = 16 * 1024
INTERNAL_HEADER = "x-tensorzero-ray-internal"


class Authentication:
    """Pure ASGI middleware, outermost: nothing runs for a request without a valid key."""

    def __init__(self, app: ASGIApp, keys: ApiKeys, errors: ErrorResponses, internal_token: str):
        """`internal_token`: what the replica's own in-process client (the Gateway's handle
        methods, reached through Ray's authentication) sends in `INTERNAL_HEADER`; it never
        leaves the process."""
        self.app = app
        self.keys = keys
        self.errors = errors
        self.internal = internal_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if secrets.compare_digest(headers.get(INTERNAL_HEADER, ""), self.internal):
            await self.app(scope, receive, send)
            return
        if path == LOGIN or path.startswith("/ui/static/"):
            if path == LOGIN:
                await self._login(scope, receive, send, headers)
            else:
                await self.app(scope, receive, send)
            return
        authorization = headers.get("authorization")
        is_ui = path == "/ui" or path.startswith("/ui/")
        if is_ui and authorization is None:
            session = _cookies(headers).get(SESSION_COOKIE)
            authorization = f"Bearer {session}" if session else None
        try:
            public_id = await self.keys.authenticate(authorization)
        except Unauthenticated as exc:
            await self._refuse(exc, scope, is_ui, path)(scope, receive, send)
            return
        if path == "/ui/logout":
            await self._logout(scope, headers)(scope, receive, send)
            return
        token = API_KEY_PUBLIC_ID.set(public_id)
        try:
            await self.app(scope, receive, send)
        finally:
            API_KEY_PUBLIC_ID.reset(token)

    def _refuse(self, exc: Unauthenticated, scope: Scope, is_ui: bool, path: str) -> Response:
        if is_ui and scope["method"] in ("GET", "HEAD"):
            target = path + (f"?{scope['query_string'].decode()}" if scope.get("query_string") else "")
            return RedirectResponse(f"{LOGIN}?next={quote(target, safe='')}", status_code=303)
        if is_ui:
            return HTMLResponse(_page("Not signed in", f"<p>{html.escape(exc.message)}</p>"), status_code=401)
        if path.startswith("/openai/"):
            return self.errors.openai(exc)
        return self.errors.native(exc)

    async def _login(self, scope: Scope, receive: Receive, send: Send, headers: Headers) -> None:
        query = dict(parse_qsl(scope.get("query_string", b"").decode()))
        target = _local(query.get("next"))
        if scope["method"] in ("GET", "HEAD"):
            await _login_page(target)(scope, receive, send)
            return
        if scope["method"] != "POST":
            await HTMLResponse(_page("Sign in", "<p>Method not allowed</p>"), status_code=405)(scope, receive, send)
            return
        if not _same_origin(headers):
            page = _page("Sign in", "<p>Refused: the form was not posted from this site.</p>")
            await HTMLResponse(page, status_code=403)(scope, receive, send)
            return
        body = await _read(receive, MAX_LOGIN_BODY)
        key = dict(parse_qsl(body.decode(errors="replace"))).get("api_key", "").strip()
        try:
            await self.keys.authenticate(f"Bearer {key}")
        except Unauthenticated as exc:
            await _login_page(target, exc.message, status=401)(scope, receive, send)
            return
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            key,
            httponly=True,
            samesite="strict",
            secure=scope.get("scheme") == "https",
            path="/",
        )
        await response(scope, receive, send)

    def _logout(self, scope: Scope, headers: Headers) -> Response:
        if scope["method"] != "POST" or not _same_origin(headers):
            return HTMLResponse(_page("Sign out", "<p>Sign out with the button on a page of this site.</p>"), 403)
        response = RedirectResponse(LOGIN, status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response


def _cookies(headers: Headers) -> dict[str, str]:
    jar = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # noqa: BLE001 - a malformed cookie header is no session
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def _same_origin(headers: Headers) -> bool:
    """A form posted from one of our pages: its Origin (or Referer) names this host."""
    source = headers.get("origin") or headers.get("referer")
    if not source:
        return False
    return urlsplit(source).netloc.lower() == headers.get("host", "").lower()


def _local(target: str | None) -> str:
    """Only a path of the UI: never another site."""
    if target and target.startswith("/ui") and not target.startswith("//"):
        return target
    return "/ui/"


async def _read(receive: Receive, limit: int) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > limit or not message.get("more_body"):
            return body[:limit]


SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


def _page(title: str, content: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)} · tensorzero-ray</title>"
        "<link rel='stylesheet' href='/ui/static/ui.css'></head>"
        f"<body><main class='login'><h1>{html.escape(title)}</h1>{content}</main></body></html>"
    )


def _login_page(target: str, error: str | None = None, status: int = 200) -> Response:
    problem = f"<p class='bad'>{html.escape(error)}</p>" if error else ""
    form = (
        f"{problem}<form method='post' action='{LOGIN}?next={quote(target, safe='')}'>"
        "<label>API key <input type='password' name='api_key' autocomplete='off' required "
        "placeholder='sk-t0-…'></label> <button type='submit'>Sign in</button></form>"
        "<p class='muted'>Create a key with <code>tzray keys create</code>.</p>"
    )
    return HTMLResponse(_page("Sign in", form), status_code=status, headers=SECURITY_HEADERS)
