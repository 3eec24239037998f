"""What a provider's batch API answers (spec §1.2): a started batch's handle, and a poll's
state with each element's response once the provider has them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from tensorzero_ray.errors import ProviderError
from tensorzero_ray.types.model import ProviderResponse

BatchState = Literal["pending", "completed", "failed"]


@dataclass
class BatchStart:
    """`params` is what polling needs later (the provider's batch and file ids); `raw_requests`
    holds each element's request body, in the order they were given."""

    params: dict[str, Any]
    raw_requests: list[str]
    raw_request: str = ""
    raw_response: str = ""


@dataclass
class BatchPoll:
    """`responses` maps an element's id to its response, or to the error the provider gave
    for that element alone; `errors` are the batch's own."""

    state: BatchState
    responses: dict[str, ProviderResponse | ProviderError] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    raw_request: str = ""
    raw_response: str = ""
