"""The hot endpoints (`POST /inference`, `/feedback`, `/openai/v1/chat/completions`) straight
to their handlers, past FastAPI's router: it tries every route's pattern in turn and builds a
dependency solution per request, which costs more than parsing the body. The same handlers
stay registered with FastAPI, so the routes, and what a request gets, are the same either way;
everything else goes through FastAPI as before."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tensorzero_ray.errors import TensorZeroError

Handler = Callable[[Request], Awaitable[Response]]


class HotPaths:
    """Pure ASGI middleware; `handlers` by exact path, POST only, and `on_error` shapes what
    a handler raises as FastAPI's exception handler for it would."""

    def __init__(self, app: ASGIApp, handlers: dict[str, Handler], on_error: Callable[[Exception], Response]):
        self.app = app
        self.handlers = handlers
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.handlers.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        try:
            response = await handler(Request(scope, receive))
        except TensorZeroError as exc:
            response = self.on_error(exc)
        await response(scope, receive, send)
