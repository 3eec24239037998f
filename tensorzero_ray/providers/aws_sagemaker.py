"""A model hosted on an AWS SageMaker endpoint behind an OpenAI-compatible server (`openai`)
or Text Generation Inference's Messages API (`tgi`): the hosted server's chat completions
body, signed with SigV4 and posted to the endpoint's `invocations`; streams come as SageMaker
event-stream `PayloadPart`s carrying the hosted server's own SSE bytes."""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

from tensorzero_ray.config.models import OpenAIProviderConfig, SelfHostedOpenAIProviderConfig
from tensorzero_ray.providers.aws_auth import AWSAuth
from tensorzero_ray.providers.aws_event_stream import event_stream
from tensorzero_ray.providers.base import CallContext, Provider
from tensorzero_ray.providers.openai import OpenAIChatCompletions
from tensorzero_ray.providers.openai_compatible import TGIProvider
from tensorzero_ray.types.model import ModelInferenceRequest, ProviderChunk, ProviderResponse


class AWSSageMakerProvider(Provider):
    provider_type = "aws_sagemaker"

    def __init__(self, name: str, config: Any, *, timeout_s: float = 900.0):
        super().__init__(name, config, timeout_s=timeout_s)
        self.auth = AWSAuth(config, "sagemaker", self.provider_type)
        shared = {"model_name": config.model_name, "api_key_location": "none", "extra_body": config.extra_body}
        # The hosted server's translator: it builds bodies and reads answers, never connects.
        if config.hosted_provider == "tgi":
            hosted = SelfHostedOpenAIProviderConfig(type="tgi", api_base="http://unused", **shared)
            self.hosted: OpenAIChatCompletions = TGIProvider(name, hosted, timeout_s=timeout_s)
        else:
            self.hosted = OpenAIChatCompletions(
                name, OpenAIProviderConfig(type="openai", **shared), timeout_s=timeout_s
            )
        self.hosted.provider_type = self.provider_type

    def url(self, region: str, stream: bool) -> str:
        base = (self.config.endpoint_url or f"https://runtime.sagemaker.{region}.amazonaws.com").rstrip("/")
        endpoint = urllib.parse.quote(self.config.endpoint_name, safe="")
        return f"{base}/endpoints/{endpoint}/{'invocations-response-stream' if stream else 'invocations'}"

    async def _signed(self, body: dict, request: ModelInferenceRequest, ctx: CallContext, stream: bool):
        headers = self.patch_headers({"content-type": "application/json"}, request, ctx)
        return await self.auth.signed_post(lambda region: self.url(region, stream), body, headers, ctx.credentials)

    async def infer(self, request: ModelInferenceRequest, ctx: CallContext) -> ProviderResponse:
        body = self.hosted.build_body(request, ctx)
        url, raw_request, headers = await self._signed(body, request, ctx, stream=False)
        raw_response = await self.send("POST", url, headers, raw_request, content=raw_request.encode())
        return self.hosted.completion(self.parse_json(raw_request, raw_response), request, raw_request, raw_response)

    async def stream(self, request: ModelInferenceRequest, ctx: CallContext) -> AsyncIterator[ProviderChunk]:
        body = self.hosted.build_body(request.model_copy(update={"stream": True}), ctx)
        url, raw_request, headers = await self._signed(body, request, ctx, stream=True)
        ctx.raw_request = raw_request
        failure: list[str] = []
        payloads = self._payloads(event_stream(self, url, headers, raw_request), failure)
        async for chunk in self.hosted.chunks(payloads, request):
            if failure:
                break
            yield chunk
        if failure:
            yield ProviderChunk(fatal=True, error=f"Error from aws_sagemaker server: {failure[0]}")

    async def _payloads(self, events: AsyncIterator[tuple[str, bytes]], failure: list[str]) -> AsyncIterator[str]:
        """The hosted server's SSE `data:` payloads, from bytes split anywhere across parts."""
        pending = b""
        data: list[str] = []
        async for kind, part in events:
            if kind == "exception":
                failure.append(part.decode(errors="replace"))
                return
            if kind != "PayloadPart":
                continue
            *lines, pending = (pending + part).split(b"\n")
            for line in lines:
                text = line.rstrip(b"\r").decode(errors="replace")
                if text.startswith("data:"):
                    data.append(text[5:].lstrip(" "))
                elif not text and data:
                    yield "\n".join(data)
                    data = []
        if pending.startswith(b"data:"):
            data.append(pending[5:].decode(errors="replace").strip())
        if data:
            yield "\n".join(data)
