"""A local server that speaks Google's wire formats: Gemini's `generateContent` and
`streamGenerateContent` as AI Studio (API key) and Vertex AI (bearer token) serve them,
Anthropic's Messages API as Vertex AI serves it (`rawPredict`), and the OAuth token endpoint
a service account exchanges its signed JWT at."""

from __future__ import annotations

import json
import re
from typing import Any

from google.auth import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.mocks.anthropic_server import AnthropicMock

TEXT = "Hello from Gemini mock"
AI_STUDIO = re.compile(r"^/v1beta/models/(?P<model>[^/:]+):(?P<method>\w+)$")
VERTEX = re.compile(
    r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/"
    r"(?:publishers/(?P<publisher>[^/]+)/models/(?P<model>[^/:]+)|endpoints/(?P<endpoint>[^/:]+)):(?P<method>\w+)$"
)
VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


def _error(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse({"error": {"code": status, "message": message, "status": code}}, status_code=status)


class GoogleMock:
    def __init__(self, api_key: str = "aistudio-test-key"):
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.tokens_issued = 0
        self.token_lifetime_s = 3600
        # The service account's public key: the token endpoint checks each JWT's signature.
        self.public_key_pem: bytes | None = None
        self._anthropic = AnthropicMock()
        self.url = ""
        self.app = Starlette(routes=[Route("/{path:path}", self.handle, methods=["POST"])])

    def last(self) -> dict[str, Any]:
        return self.requests[-1]

    async def handle(self, request: Request) -> Response:
        path = "/" + request.path_params["path"]
        if path == "/token":
            return await self.token(request)
        body = await request.json()
        self.requests.append(
            {"path": path, "query": dict(request.query_params), "headers": dict(request.headers), "body": body}
        )
        match = AI_STUDIO.match(path)
        if match:
            if request.headers.get("x-goog-api-key") != self.api_key:
                return _error(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT")
            return self.gemini(match["model"], match["method"], request, body)
        match = VERTEX.match(path)
        if match is None:
            return _error(404, f"no such method: {path}", "NOT_FOUND")
        if request.headers.get("authorization") != f"Bearer ya29.mock-{self.tokens_issued}":
            return _error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED")
        model = match["model"] or match["endpoint"]
        if match["publisher"] == "anthropic":
            return await self.anthropic(model, match["method"], body)
        return self.gemini(model, match["method"], request, body)

    async def token(self, request: Request) -> Response:
        form = await request.form()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        try:
            # google-auth signs for Google's own token endpoint, whatever `token_uri` says.
            claims = jwt.decode(form["assertion"], certs=self.public_key_pem, audience=GOOGLE_TOKEN_AUDIENCE)
        except ValueError as exc:
            return JSONResponse({"error": "invalid_grant", "error_description": str(exc)}, status_code=400)
        if "cloud-platform" not in claims.get("scope", ""):
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        self.tokens_issued += 1
        return JSONResponse(
            {
                "access_token": f"ya29.mock-{self.tokens_issued}",
                "expires_in": self.token_lifetime_s,
                "token_type": "Bearer",
            }
        )

    def gemini(self, model: str, method: str, request: Request, body: dict) -> Response:
        contents = body.get("contents")
        if not contents or any(c.get("role") not in ("user", "model") for c in contents):
            return _error(
                400, "Please ensure that contents is non-empty and roles are user or model.", "INVALID_ARGUMENT"
            )
        if model.endswith("-500"):
            return _error(500, "Internal error encountered.", "INTERNAL")
        if model.endswith("-400"):
            return _error(400, 'Invalid JSON payload received. Unknown name "bogus".', "INVALID_ARGUMENT")
        parts, finish = self._parts(model, body)
        usage = {"promptTokenCount": 12, "candidatesTokenCount": 5, "totalTokenCount": 17, "cachedContentTokenCount": 3}
        if "thinking" in model:
            usage["thoughtsTokenCount"] = 7
        if method == "generateContent":
            candidate = {"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}
            return JSONResponse({"candidates": [candidate], "usageMetadata": usage, "modelVersion": model})
        if method != "streamGenerateContent" or request.query_params.get("alt") != "sse":
            return _error(400, f"unsupported method {method}", "INVALID_ARGUMENT")
        return StreamingResponse(self._stream(model, parts, finish, usage), media_type="text/event-stream")

    def _parts(self, model: str, body: dict) -> tuple[list[dict], str]:
        if "tool" in model:
            call = {"functionCall": {"name": "get_weather", "args": {"city": "Tokyo"}}, "thoughtSignature": "sig-call"}
            return [call], "STOP"
        if "thinking" in model:
            return [{"text": "Let me think", "thought": True, "thoughtSignature": "sig-1"}, {"text": TEXT}], "STOP"
        if "json" in model:
            return [{"text": '{"answer":"42"}'}], "STOP"
        if "image" in model:
            inline = [p["inlineData"] for c in body["contents"] for p in c["parts"] if "inlineData" in p]
            return [{"text": f"I see {inline[0]['mimeType']} of {len(inline[0]['data'])} base64 chars"}], "STOP"
        return [{"text": TEXT}], "STOP"

    async def _stream(self, model: str, parts: list[dict], finish: str, usage: dict):
        pieces: list[dict] = []
        for part in parts:
            if "text" in part and not part.get("thought"):
                words = part["text"].split(" ")
                pieces += [{"text": w if i == 0 else " " + w} for i, w in enumerate(words)]
            else:
                pieces.append(part)
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": [piece]}, "index": 0}
            chunk: dict[str, Any] = {"candidates": [candidate], "modelVersion": model}
            if last and "cut" not in model:
                candidate["finishReason"] = finish
                chunk["usageMetadata"] = usage
            yield f"data: {json.dumps(chunk)}\r\n\r\n"

    async def anthropic(self, model: str, method: str, body: dict) -> Response:
        if body.get("anthropic_version") != VERTEX_ANTHROPIC_VERSION or "model" in body:
            return _error(
                400, "anthropic_version must be vertex-2023-10-16 and model must not be set", "INVALID_ARGUMENT"
            )
        if "max_tokens" not in body:
            return _error(400, "max_tokens: Field required", "INVALID_ARGUMENT")
        if method == "streamRawPredict":
            return StreamingResponse(self._anthropic._stream(model), media_type="text/event-stream")
        if method != "rawPredict":
            return _error(400, f"unsupported method {method}", "INVALID_ARGUMENT")
        return JSONResponse(self._anthropic._message(model, body))
