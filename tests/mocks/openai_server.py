"""A local server that speaks OpenAI's chat completions wire format. The `model` field picks
a behaviour; every request is recorded so tests can check what the gateway sent."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

TEXT = "Hello from the mock"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(48))
STREAM_PIECES = ["Hello", " from", " the", " mock"]
TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Tokyo"}'}}


SQL = "SELECT 1"
PIRATE_ANSWER = "Arr, matey!"
# The third does not render (an undefined variable): its trials fail, and the search goes on.
PROPOSALS = ["Greet the user politely and briefly.", "Answer every message the way a pirate would.",
             "Answer {{ missing.deeper }} briefly.", "Be helpful and kind."]  # fmt: skip


def _custom_tool(body: dict) -> str | None:
    """The first free-form (custom) tool offered, which `*tool*` models then call."""
    return next((t["custom"]["name"] for t in body.get("tools") or [] if t.get("type") == "custom"), None)


class OpenAIMock:
    def __init__(self, api_key: str = "sk-test"):
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/responses", self.responses, methods=["POST"]),
                Route("/openai/deployments/{deployment}/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/openai/deployments/{deployment}/embeddings", self.embeddings, methods=["POST"]),
                Route("/files/{name}", self.files, methods=["GET"]),
                Route("/v1/files", self.upload, methods=["POST"]),
                Route("/v1/files/{file_id}/content", self.file_content, methods=["GET"]),
                Route("/v1/batches", self.create_batch, methods=["POST"]),
                Route("/v1/batches/{batch_id}", self.get_batch, methods=["GET"]),
                Route("/v1/fine_tuning/jobs", self.create_job, methods=["POST"]),
                Route("/v1/fine_tuning/jobs/{job_id}", self.get_job, methods=["GET"]),
                Route("/v1/fine_tuning/jobs/{job_id}/events", self.job_events, methods=["GET"]),
            ]
        )
        self.uploads: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.job_bodies: list[dict[str, Any]] = []
        self.batches: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, str] = {}

    def last(self) -> dict[str, Any]:
        return self.requests[-1]

    async def files(self, request: Request) -> Response:
        """Static files for URL inputs: a PNG, and text that claims to be one."""
        if request.path_params["name"] == "pixel.png":
            return Response(PNG, media_type="image/png")
        if request.path_params["name"] == "fake.png":
            return Response(b"not an image at all", media_type="image/png")
        return Response(b"", status_code=404)

    def _unauthorized(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"error": {"message": "Incorrect API key provided"}}, status_code=401)
        return None

    async def upload(self, request: Request) -> Response:
        """POST /v1/files (multipart: purpose, file): each line must be a JSON object."""
        if (denied := self._unauthorized(request)) is not None:
            return denied
        form = await request.form()
        upload = form["file"]
        content = (await upload.read()).decode()
        try:
            rows = [json.loads(line) for line in content.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            return JSONResponse({"error": {"message": f"Invalid file format: {exc}"}}, status_code=400)
        file_id = f"file-{len(self.uploads) + 1}"
        self.uploads[file_id] = {"purpose": form["purpose"], "filename": upload.filename, "rows": rows}
        return JSONResponse(
            {
                "id": file_id,
                "object": "file",
                "bytes": len(content),
                "created_at": 1700000000,
                "filename": upload.filename,
                "purpose": form["purpose"],
            }
        )

    async def create_batch(self, request: Request) -> Response:
        """POST /v1/batches over an uploaded JSONL file; the batch then advances one state per
        poll, and fails if its lines ask for a `*batch-fail*` model."""
        if (denied := self._unauthorized(request)) is not None:
            return denied
        body = await request.json()
        upload = self.uploads.get(body.get("input_file_id"))
        if upload is None or upload["purpose"] != "batch":
            return JSONResponse({"error": {"message": "input_file_id is not a batch file"}}, status_code=400)
        if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
            return JSONResponse({"error": {"message": "unsupported endpoint or window"}}, status_code=400)
        batch_id = f"batch_{len(self.batches) + 1}"
        self.batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body["endpoint"],
            "input_file_id": body["input_file_id"],
            "completion_window": "24h",
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "errors": None,
        }
        return JSONResponse(self.batches[batch_id])

    async def get_batch(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        batch = self.batches.get(request.path_params["batch_id"])
        if batch is None:
            return JSONResponse({"error": {"message": "No such batch"}}, status_code=404)
        lines = self.uploads[batch["input_file_id"]]["rows"]
        if batch["status"] == "validating":
            batch["status"] = "in_progress"
        elif batch["status"] == "in_progress":
            if any("batch-fail" in line["body"]["model"] for line in lines):
                batch["status"] = "failed"
                batch["errors"] = {"object": "list", "data": [{"code": "model_not_found", "message": "no such model"}]}
            else:
                self._finish(batch, lines)
        return JSONResponse(batch)

    def _finish(self, batch: dict[str, Any], lines: list[dict[str, Any]]) -> None:
        """Each line answered as chat completions would; a line that says "please fail" errs."""
        done, failed = [], []
        for i, line in enumerate(lines):
            base = {"id": f"batch_req_{i}", "custom_id": line["custom_id"]}
            if "please fail" in json.dumps(line["body"]["messages"]):
                error = {"message": "This line was refused", "type": "invalid_request_error"}
                failed.append({**base, "response": {"status_code": 400, "body": {"error": error}}, "error": None})
            else:
                body = self._completion(line["body"]["model"], line["body"])
                done.append({**base, "response": {"status_code": 200, "request_id": f"req_{i}", "body": body}})
        batch["status"] = "completed"
        for key, rows in (("output_file_id", done), ("error_file_id", failed)):
            if rows:
                file_id = f"file-out-{len(self.outputs) + 1}"
                self.outputs[file_id] = "\n".join(json.dumps(row) for row in rows) + "\n"
                batch[key] = file_id

    async def file_content(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        content = self.outputs.get(request.path_params["file_id"])
        if content is None:
            return JSONResponse({"error": {"message": "No such file"}}, status_code=404)
        return Response(content, media_type="application/jsonl")

    async def create_job(self, request: Request) -> Response:
        """POST /v1/fine_tuning/jobs; the job then advances one state per poll."""
        if (denied := self._unauthorized(request)) is not None:
            return denied
        body = await request.json()
        self.job_bodies.append(body)
        if body["training_file"] not in self.uploads:
            return JSONResponse({"error": {"message": "training_file not found", "param": "training_file"}}, 400)
        rows = self.uploads[body["training_file"]]["rows"]
        method = body.get("method", {}).get("type", "supervised")
        needed = "messages" if method == "supervised" else "preferred_output"
        status = "validating_files" if all(needed in row for row in rows) else "failed"
        job_id = f"ftjob-{len(self.jobs) + 1}"
        self.jobs[job_id] = {
            "id": job_id,
            "object": "fine_tuning.job",
            "model": body["model"],
            "created_at": 1700000000,
            "fine_tuned_model": None,
            "status": status,
            "training_file": body["training_file"],
            "validation_file": body.get("validation_file"),
            "error": None
            if status != "failed"
            else {"code": "invalid_training_file", "message": f"rows need `{needed}`"},
            "trained_tokens": None,
            "method": body.get("method"),
            "events": [f"Validating training file: {body['training_file']}"],
        }
        if body["model"].startswith("fail"):
            self.jobs[job_id]["fail"] = True
        return JSONResponse({k: v for k, v in self.jobs[job_id].items() if k not in ("events", "fail")})

    async def get_job(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            return JSONResponse({"error": {"message": "No such job"}}, status_code=404)
        steps = ["validating_files", "queued", "running", "succeeded"]
        if job["status"] in steps[:-1]:
            job["status"] = steps[steps.index(job["status"]) + 1]
            job["events"].append(f"Job status: {job['status']}")
            if job["status"] == "succeeded" and job.get("fail"):
                job["status"] = "failed"
                job["error"] = {"code": "server_error", "message": "The job failed on the provider"}
            elif job["status"] == "succeeded":
                job["fine_tuned_model"] = f"ft:{job['model']}:tensorzero-ray::{job['id'][-4:]}"
                job["trained_tokens"] = 1234
        return JSONResponse({k: v for k, v in job.items() if k not in ("events", "fail")})

    async def job_events(self, request: Request) -> Response:
        job = self.jobs[request.path_params["job_id"]]
        data = [
            {"object": "fine_tuning.job.event", "id": f"ftevent-{i}", "created_at": 1700000000 + i, "level": "info",
             "message": message}
            for i, message in enumerate(job["events"])
        ]  # fmt: skip
        return JSONResponse({"object": "list", "data": list(reversed(data)), "has_more": False})

    async def embeddings(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"path": request.url.path, "headers": dict(request.headers), "body": body})
        auth = request.headers.get("authorization") or request.headers.get("api-key")
        if auth not in (f"Bearer {self.api_key}", self.api_key):
            return JSONResponse({"error": {"message": "Incorrect API key provided"}}, status_code=401)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        size = body.get("dimensions", 3)
        if body.get("model") == "keywords":
            # Known directions: how often the text names a cat, a dog and a fish.
            vectors = [[text.count("cat") + 0.0, text.count("dog") + 0.0, text.count("fish") + 0.0] for text in inputs]
        else:
            vectors = [[float(len(text))] * size for text in inputs]
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        return JSONResponse(
            {
                "object": "list",
                "data": list(reversed(data)),
                "model": body.get("model", request.path_params.get("deployment")),
                "usage": {"prompt_tokens": 5 * len(inputs), "total_tokens": 5 * len(inputs)},
            }
        )

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(
            {
                "path": request.url.path,
                "query": dict(request.query_params),
                "headers": dict(request.headers),
                "body": body,
            }
        )
        model = body.get("model") or request.path_params.get("deployment", "")
        auth = request.headers.get("authorization") or request.headers.get("api-key")
        if "noauth" not in model and auth not in (f"Bearer {self.api_key}", self.api_key):
            # Like some real servers, it echoes the key it was sent.
            message = f"Incorrect API key provided: {auth.removeprefix('Bearer ') if auth else None}"
            return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status_code=401)
        if model.endswith("-500"):
            return JSONResponse(
                {"error": {"message": "The server had an error", "type": "server_error"}}, status_code=500
            )
        if model.endswith("-429"):
            return JSONResponse({"error": {"message": "Rate limit reached", "type": "rate_limit"}}, status_code=429)
        if "slow" in model and not body.get("stream"):
            await asyncio.sleep(2)
        if body.get("stream"):
            return StreamingResponse(self._stream(model, body), media_type="text/event-stream")
        return JSONResponse(self._completion(model, body))

    async def responses(self, request: Request) -> Response:
        """OpenAI's Responses API: output items, and typed SSE events when streaming."""
        body = await request.json()
        self.requests.append({"path": request.url.path, "headers": dict(request.headers), "body": body})
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse(
                {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}, 401
            )
        model = body["model"]
        if model.endswith("-500"):
            return JSONResponse({"error": {"message": "The server had an error", "type": "server_error"}}, 500)
        if not isinstance(body.get("input"), list) or not body["input"]:
            return JSONResponse(
                {"error": {"message": "Missing required parameter: 'input'.", "type": "invalid_request_error"}}, 400
            )
        output: list[dict[str, Any]] = []
        if any(t.get("type") == "web_search" for t in body.get("tools") or []):
            output.append({"type": "web_search_call", "id": "ws_1", "status": "completed"})
        if "reasoning" in model:
            reasoning: dict[str, Any] = {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "Thinking it over"}],
            }
            if "reasoning.encrypted_content" in (body.get("include") or []):
                reasoning["encrypted_content"] = "gAAAA-encrypted"
            output.append(reasoning)
        if "tool" in model:
            output.append(
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_1",
                    "name": "get_weather",
                    "arguments": '{"city":"Tokyo"}',
                    "status": "completed",
                }
            )
        else:
            text = '{"answer":"42"}' if "json" in model else TEXT
            output.append(
                {
                    "type": "message",
                    "id": "msg_1",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            )
        response = {
            "id": "resp_1",
            "object": "response",
            "model": model,
            "status": "incomplete" if "incomplete" in model else "completed",
            "incomplete_details": {"reason": "max_output_tokens"} if "incomplete" in model else None,
            "output": output,
            "usage": {
                "input_tokens": 11,
                "input_tokens_details": {"cached_tokens": 2},
                "output_tokens": 7,
                "output_tokens_details": {"reasoning_tokens": 3},
                "total_tokens": 18,
            },
        }
        if body.get("stream"):
            return StreamingResponse(self._response_events(response), media_type="text/event-stream")
        return JSONResponse(response)

    async def _response_events(self, response: dict):
        def event(kind: str, **fields) -> str:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **fields})}\n\n"

        yield event("response.created", response={**response, "status": "in_progress", "output": []})
        for index, item in enumerate(response["output"]):
            if item["type"] == "message":
                yield event("response.output_item.added", output_index=index, item={**item, "content": []})
                for piece in (
                    ("Hello", " from", " the", " mock")
                    if item["content"][0]["text"] == TEXT
                    else (item["content"][0]["text"],)
                ):
                    yield event(
                        "response.output_text.delta",
                        item_id=item["id"],
                        output_index=index,
                        content_index=0,
                        delta=piece,
                    )
            elif item["type"] == "function_call":
                yield event("response.output_item.added", output_index=index, item={**item, "arguments": ""})
                for piece in ('{"city":', '"Tokyo"}'):
                    yield event(
                        "response.function_call_arguments.delta", item_id=item["id"], output_index=index, delta=piece
                    )
            elif item["type"] == "reasoning":
                yield event("response.output_item.added", output_index=index, item={**item, "summary": []})
                for piece in ("Thinking", " it over"):
                    yield event(
                        "response.reasoning_summary_text.delta",
                        item_id=item["id"],
                        output_index=index,
                        summary_index=0,
                        delta=piece,
                    )
            else:
                yield event("response.output_item.added", output_index=index, item=item)
            yield event("response.output_item.done", output_index=index, item=item)
        if "cut" not in response["model"]:
            yield event(
                "response.incomplete" if response["status"] == "incomplete" else "response.completed", response=response
            )

    def _completion(self, model: str, body: dict) -> dict:
        message: dict[str, Any] = {"role": "assistant", "content": TEXT}
        finish = "stop"
        if "tool" in model:
            custom = _custom_tool(body)
            call = {"id": "call_c", "type": "custom", "custom": {"name": custom, "input": SQL}} if custom else TOOL_CALL
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        elif "json" in model:
            message["content"] = '{"answer":"42"}'
        elif "judge" in model:
            message["content"] = '{"score": true}'
        elif model.startswith("think"):
            message["content"] = '{"thinking": "step by step", "response": {"answer": "42"}}'
        elif model.startswith("choose-"):
            # A best-of-n evaluator that names the candidate in its model name.
            message["content"] = json.dumps({"thinking": "compared them", "answer_choice": int(model.split("-")[1])})
        elif model == "pirate":
            # Right only when told the idea: the prompt search has to find it.
            said = json.dumps(body["messages"]).lower()
            message["content"] = PIRATE_ANSWER if "pirate" in said else "Hello."
        elif model == "analyst":
            message["content"] = "The answers should sound like a pirate."
        elif model == "mutator":
            message["content"] = json.dumps({"system": "Answer every message the way a pirate would."})
        elif model == "proposer":
            # A proposal model that has the right idea on one seed in three.
            message["content"] = PROPOSALS[(body.get("seed") or 0) % len(PROPOSALS)]
        elif "reasoning" in model:
            message["reasoning_content"] = "thinking hard"
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": 12,
                "completion_tokens": 7,
                "total_tokens": 19,
                "prompt_tokens_details": {"cached_tokens": 3},
            },
        }

    async def _stream(self, model: str, body: dict):
        def event(delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
            payload = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": model,
                "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if usage:
                payload["usage"] = usage
            return f"data: {json.dumps(payload)}\n\n"

        if "slow" in model:
            await asyncio.sleep(2)
        if "tool" in model and _custom_tool(body):
            first = {"index": 0, "id": "call_c", "type": "custom", "custom": {"name": _custom_tool(body), "input": ""}}
            yield event({"role": "assistant", "tool_calls": [first]})
            for piece in ["SELECT", " 1"]:
                yield event({"tool_calls": [{"index": 0, "type": "custom", "custom": {"input": piece}}]})
            yield event({}, "tool_calls")
        elif "tool" in model:
            yield event(
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ],
                }
            )
            for piece in ['{"city"', ':"Tokyo"}']:
                yield event({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            yield event({}, "tool_calls")
        else:
            pieces = ['{"answer"', ':"42"}'] if "json" in model else STREAM_PIECES
            for index, piece in enumerate(pieces):
                if ("break-early" in model and index == 0) or ("break" in model and index == 2):
                    raise ConnectionResetError("mock upstream dropped the connection")
                yield event({"role": "assistant", "content": piece} if index == 0 else {"content": piece})
                await asyncio.sleep(0)
            yield event({}, "stop")
        if body.get("stream_options", {}).get("include_usage"):
            yield event({}, usage={"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16})
        yield "data: [DONE]\n\n"
