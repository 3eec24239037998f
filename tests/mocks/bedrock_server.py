"""A local server that speaks AWS Bedrock's Converse and ConverseStream: it checks each
request's SigV4 signature by computing it again with botocore from what arrived, and streams
in AWS's binary event-stream encoding."""

from __future__ import annotations

import base64
import json
import re
import struct
import zlib
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

TEXT = "Hello from Bedrock mock"
AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
    r"SignedHeaders=(?P<signed>[^,]+), Signature=(?P<signature>[0-9a-f]+)"
)


def check_sigv4(
    request: Request, body: bytes, base_url: str, access_key: str, secret_key: str, service: str, record: dict
) -> tuple[str, str] | None:
    """None when the signature is the one botocore computes for the request as it arrived
    (over the headers it names); else (error type, message). Fills `record` with the region,
    the expected signature and `auth`."""
    found = AUTHORIZATION.fullmatch(request.headers.get("authorization", ""))
    if found is None or found["key"] != access_key or found["service"] != service:
        return "UnrecognizedClientException", "The security token included in the request is invalid."
    raw_path = request.scope["raw_path"].decode()
    signed = {name: request.headers[name] for name in found["signed"].split(";") if name != "host"}
    remade = AWSRequest(method=request.method, url=f"{base_url}{raw_path}", data=body, headers=signed)
    remade.context["timestamp"] = request.headers["x-amz-date"]
    token = request.headers.get("x-amz-security-token")
    auth = SigV4Auth(Credentials(access_key, secret_key, token), service, found["region"])
    record["region"] = found["region"]
    record["expected_signature"] = auth.signature(auth.string_to_sign(remade, auth.canonical_request(remade)), remade)
    if found["signature"] != record["expected_signature"]:
        return (
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        )
    record["auth"] = "sigv4"
    return None


def event_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One message of AWS's event-stream encoding: prelude, prelude CRC, string headers,
    payload, message CRC."""
    encoded = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        encoded += struct.pack("!B", len(raw_name)) + raw_name + struct.pack("!BH", 7, len(raw_value)) + raw_value
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded))
    message = prelude + struct.pack("!I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack("!I", zlib.crc32(message))


def event(kind: str, payload: dict) -> bytes:
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return event_message(headers, json.dumps(payload).encode())


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status, headers={"x-amzn-ErrorType": kind})


class BedrockMock:
    def __init__(self, access_key: str = "AKIDMOCKEXAMPLE", secret_key: str = "mock-secret-key-0123456789"):
        self.access_key = access_key
        self.secret_key = secret_key
        self.bearer_key = "bedrock-api-key-for-tests"
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        self.app = Starlette(routes=[Route("/model/{model}/{method}", self.handle, methods=["POST"])])

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
        if request.headers.get("authorization") == f"Bearer {self.bearer_key}":
            record["auth"] = "bearer"
        else:
            refused = check_sigv4(request, body, self.url, self.access_key, self.secret_key, "bedrock", record)
            if refused is not None:
                return _error(403, *refused)
        model = request.path_params["model"]
        payload = record["body"]
        if not payload.get("messages"):
            return _error(400, "ValidationException", "messages: at least one message is required")
        if model.endswith("-500"):
            return _error(500, "InternalServerException", "The server had an internal error.")
        if model.endswith("-400"):
            return _error(400, "ValidationException", "The provided model identifier is invalid.")
        content, stop = self._content(model, payload)
        usage = {
            "inputTokens": 15,
            "outputTokens": 6,
            "totalTokens": 21,
            "cacheReadInputTokens": 4,
            "cacheWriteInputTokens": 1,
        }
        if request.path_params["method"] == "converse":
            return JSONResponse(
                {
                    "output": {"message": {"role": "assistant", "content": content}},
                    "stopReason": stop,
                    "usage": usage,
                    "metrics": {"latencyMs": 12},
                }
            )
        if request.path_params["method"] != "converse-stream":
            return _error(404, "UnknownOperationException", "unknown operation")
        return StreamingResponse(
            self._stream(model, content, stop, usage), media_type="application/vnd.amazon.eventstream"
        )

    def _content(self, model: str, payload: dict) -> tuple[list[dict], str]:
        if "tool" in model:
            return [
                {"text": "Let me check."},
                {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Tokyo"}}},
            ], "tool_use"
        if "json" in model:
            use = {"toolUseId": "tooluse_2", "name": "respond", "input": {"answer": "42"}}
            return [{"toolUse": use}], "tool_use"
        if "thinking" in model:
            reasoning = {"reasoningText": {"text": "Let me think", "signature": "bedrock-sig"}}
            return [{"reasoningContent": reasoning}, {"text": TEXT}], "end_turn"
        if "image" in model:
            image = next(b["image"] for m in payload["messages"] for b in m["content"] if "image" in b)
            size = len(base64.b64decode(image["source"]["bytes"]))
            return [{"text": f"I see {image['format']} of {size} bytes"}], "end_turn"
        return [{"text": TEXT}], "end_turn"

    async def _stream(self, model: str, content: list[dict], stop: str, usage: dict):
        yield event("messageStart", {"role": "assistant"})
        for index, block in enumerate(content):
            if "text" in block:
                for i, word in enumerate(block["text"].split(" ")):
                    yield event(
                        "contentBlockDelta",
                        {"contentBlockIndex": index, "delta": {"text": word if i == 0 else " " + word}},
                    )
                    if "throttle" in model:
                        headers = {
                            ":exception-type": "throttlingException",
                            ":content-type": "application/json",
                            ":message-type": "exception",
                        }
                        yield event_message(
                            headers, json.dumps({"message": "Too many requests, please wait."}).encode()
                        )
                        return
            elif "toolUse" in block:
                use = block["toolUse"]
                start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
                yield event("contentBlockStart", {"contentBlockIndex": index, "start": start})
                text = json.dumps(use["input"])
                for piece in (text[: len(text) // 2], text[len(text) // 2 :]):
                    yield event(
                        "contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}}
                    )
            elif "reasoningContent" in block:
                reasoning = block["reasoningContent"]["reasoningText"]
                yield event(
                    "contentBlockDelta",
                    {"contentBlockIndex": index, "delta": {"reasoningContent": {"text": reasoning["text"]}}},
                )
                yield event(
                    "contentBlockDelta",
                    {"contentBlockIndex": index, "delta": {"reasoningContent": {"signature": reasoning["signature"]}}},
                )
            yield event("contentBlockStop", {"contentBlockIndex": index})
        if "cut" in model:
            return
        yield event("messageStop", {"stopReason": stop})
        yield event("metadata", {"usage": usage, "metrics": {"latencyMs": 12}})
