"""A local server that speaks SageMaker's runtime API for an endpoint hosting an
OpenAI-compatible model server: SigV4 checked as AWS does, `invocations` answered with the
hosted server's JSON, and `invocations-response-stream` with event-stream `PayloadPart`s that
carry the hosted server's SSE bytes, split at arbitrary points."""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.mocks.bedrock_server import check_sigv4, event_message
from tests.mocks.openai_server import OpenAIMock


def payload_part(data: bytes) -> bytes:
    return event_message({":event-type": "PayloadPart", ":message-type": "event"}, data)


class SageMakerMock:
    def __init__(self, access_key: str = "AKIDSAGEMAKER", secret_key: str = "sagemaker-secret-0123456789"):
        self.access_key = access_key
        self.secret_key = secret_key
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        self._hosted = OpenAIMock()
        self.app = Starlette(routes=[Route("/endpoints/{endpoint}/{method}", self.handle, methods=["POST"])])

    def last(self) -> dict[str, Any]:
        return self.requests[-1]

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        record = {
            "path": request.scope["raw_path"].decode(),
            "headers": dict(request.headers),
            "body": json.loads(body),
        }
        self.requests.append(record)
        refused = check_sigv4(request, body, self.url, self.access_key, self.secret_key, "sagemaker", record)
        if refused is not None:
            return JSONResponse({"message": refused[1]}, status_code=403, headers={"x-amzn-ErrorType": refused[0]})
        endpoint = request.path_params["endpoint"]
        payload = record["body"]
        if endpoint.endswith("-failing"):
            message = 'Received server error (500) from primary with message "model crashed".'
            return JSONResponse({"ErrorCode": "MODEL_ERROR", "Message": message}, status_code=424)
        model = payload.get("model", "")
        if request.path_params["method"] == "invocations":
            return JSONResponse(self._hosted._completion(model, payload))
        return StreamingResponse(self._parts(endpoint, model, payload), media_type="application/vnd.amazon.eventstream")

    async def _parts(self, endpoint: str, model: str, payload: dict):
        sse = "".join([piece async for piece in self._hosted._stream(model, payload)]).encode()
        if "crash" in endpoint:
            yield payload_part(sse[:40])
            headers = {":exception-type": "ModelStreamError", ":message-type": "exception"}
            yield event_message(
                headers, json.dumps({"Message": "model stream broke", "ErrorCode": "ModelError"}).encode()
            )
            return
        # Parts cut across lines and events, as SageMaker forwards whatever the server flushed.
        for start in range(0, len(sse), 37):
            yield payload_part(sse[start : start + 37])
