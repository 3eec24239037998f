"""OpenAI itself: chat completions, plus the files and batch APIs that batch inference uses
(spec §1.2). Elements go up as one JSONL file, each under its inference id as `custom_id`."""

from __future__ import annotations

from typing import Any

import orjson

from tensorzero_ray.errors import ProviderError
from tensorzero_ray.providers.base import CallContext
from tensorzero_ray.providers.batch import BatchPoll, BatchStart, BatchState
from tensorzero_ray.providers.openai import OpenAIChatCompletions
from tensorzero_ray.types.model import ModelInferenceRequest

ENDPOINT = "/v1/chat/completions"
# OpenAI's batch statuses, as the three TensorZero reports.
STATES: dict[str, BatchState] = {
    "validating": "pending",
    "in_progress": "pending",
    "finalizing": "pending",
    "completed": "completed",
    "failed": "failed",
    "expired": "failed",
    "cancelling": "failed",
    "cancelled": "failed",
}


class OpenAIProvider(OpenAIChatCompletions):
    async def start_batch(self, requests: list[tuple[str, ModelInferenceRequest]], ctx: CallContext) -> BatchStart:
        headers = self.headers(ctx)
        bodies = []
        lines = []
        for custom_id, request in requests:
            body = self.build_body(request.model_copy(update={"stream": False}), ctx)
            bodies.append(orjson.dumps(body).decode())
            lines.append(orjson.dumps({"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}))
        upload = await self.send(
            "POST",
            self.api_base() + "/files",
            _without_content_type(headers),
            "batch input file",
            form={
                "purpose": "batch",
                "file": ("tensorzero-batch.jsonl", b"\n".join(lines) + b"\n", "application/jsonl"),
            },
        )
        file_id = _field(self.parse_json("batch input file", upload), "id", self, upload)
        create = {"input_file_id": file_id, "endpoint": ENDPOINT, "completion_window": "24h"}
        raw_request, raw_response, batch = await self.post_json(self.api_base() + "/batches", create, headers)
        return BatchStart(
            params={"file_id": file_id, "batch_id": _field(batch, "id", self, raw_response)},
            raw_requests=bodies,
            raw_request=raw_request,
            raw_response=raw_response,
        )

    async def poll_batch(
        self, params: dict[str, Any], requests: dict[str, ModelInferenceRequest], ctx: CallContext
    ) -> BatchPoll:
        headers = self.headers(ctx)
        url = f"{self.api_base()}/batches/{params['batch_id']}"
        raw_response = await self.send("GET", url, headers, url)
        batch = self.parse_json(url, raw_response)
        state = STATES.get(batch.get("status"), "pending")
        if state == "failed":
            errors = [e.get("message", "") for e in (batch.get("errors") or {}).get("data") or []]
            return BatchPoll(
                "failed",
                errors=errors or [f"OpenAI batch {batch.get('status')}"],
                raw_request=url,
                raw_response=raw_response,
            )
        if state == "pending":
            return BatchPoll("pending", raw_request=url, raw_response=raw_response)
        responses: dict[str, Any] = {}
        for file_key in ("error_file_id", "output_file_id"):
            if batch.get(file_key):
                for line in await self._lines(batch[file_key], headers):
                    responses[line.get("custom_id", "")] = self._answer(line, requests.get(line.get("custom_id", "")))
        return BatchPoll("completed", responses=responses, raw_request=url, raw_response=raw_response)

    async def _lines(self, file_id: str, headers: dict[str, str]) -> list[dict[str, Any]]:
        url = f"{self.api_base()}/files/{file_id}/content"
        text = await self.send("GET", url, headers, url)
        try:
            return [orjson.loads(line) for line in text.splitlines() if line.strip()]
        except orjson.JSONDecodeError:
            raise self.error("Error from openai server: batch output file is not JSONL", raw_response=text) from None

    def _answer(self, line: dict[str, Any], request: ModelInferenceRequest | None):
        response = line.get("response") or {}
        body = response.get("body")
        raw = orjson.dumps(body).decode() if body is not None else orjson.dumps(line).decode()
        status = response.get("status_code")
        if request is None or line.get("error") or status != 200:
            error = line.get("error") or (body or {}).get("error") or {}
            message = error.get("message") if isinstance(error, dict) else str(error)
            return self.error(f"Error from openai server: {message or f'HTTP {status}'}", raw_response=raw)
        try:
            return self.completion(body, request, "", raw)
        except ProviderError as exc:
            return exc


def _without_content_type(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() != "content-type"}


def _field(data: Any, key: str, provider: OpenAIChatCompletions, raw_response: str) -> str:
    if not isinstance(data, dict) or not isinstance(data.get(key), str):
        raise provider.error(f"Error from openai server: response has no `{key}`", raw_response=raw_response)
    return data[key]
