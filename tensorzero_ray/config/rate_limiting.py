"""`[rate_limiting]` in TensorZero's form (spec §3.14): rules of token buckets, each limit
written `<resource>_per_<window> = N` (capacity and refill N per window) or
`{ capacity = C, refill_rate = R }` (R per window), scoped by tags or API key, with
priorities."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

WINDOW_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800, "month": 2592000}
_LIMIT_KEY = re.compile(r"^(model_inferences|tokens|cost)_per_(second|minute|hour|day|week|month)$")
EACH = "tensorzero::each"
TOTAL = "tensorzero::total"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BucketSize(Strict):
    capacity: float = Field(gt=0)
    refill_rate: float = Field(gt=0)


class Limit(BaseModel):
    resource: Literal["model_inferences", "tokens", "cost"]
    window: str
    capacity: float
    refill_per_s: float

    @property
    def name(self) -> str:
        return f"{self.resource}_per_{self.window}"


class ScopeEntry(Strict):
    tag_key: str | None = None
    tag_value: str | None = None
    api_key_public_id: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "ScopeEntry":
        tag = self.tag_key is not None and self.tag_value is not None
        key = self.api_key_public_id is not None
        if tag == key or (self.tag_key is None) != (self.tag_value is None):
            raise ValueError("a scope entry is `{tag_key, tag_value}` or `{api_key_public_id}`")
        if self.api_key_public_id not in (None, EACH) and len(self.api_key_public_id) != 12:
            raise ValueError("`api_key_public_id` is a key's 12-character public id or `tensorzero::each`")
        return self


class RateLimitRule(BaseModel):
    model_config = ConfigDict(extra="allow")
    priority: int | None = None
    always: bool = False
    scope: list[ScopeEntry] = Field(default_factory=list)
    _parsed: list[Limit] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _limits(self) -> "RateLimitRule":
        if (self.priority is None) == (not self.always):
            raise ValueError("a rule needs `priority = <integer>` or `always = true` (not both)")
        limits = []
        for key, value in (self.model_extra or {}).items():
            found = _LIMIT_KEY.match(key)
            if found is None:
                raise ValueError(
                    f"unknown key `{key}`: limits are `<model_inferences|tokens|cost>_per_<second|minute|hour|day|week|month>`"
                )
            size = (
                BucketSize(capacity=value, refill_rate=value)
                if isinstance(value, (int, float))
                else BucketSize.model_validate(value)
            )
            window = found.group(2)
            limits.append(
                Limit(
                    resource=found.group(1),
                    window=window,
                    capacity=size.capacity,
                    refill_per_s=size.refill_rate / WINDOW_SECONDS[window],
                )
            )
        if not limits:
            raise ValueError("a rule needs at least one limit, e.g. `model_inferences_per_minute = 100`")
        self._parsed = limits
        return self

    @property
    def limits(self) -> list[Limit]:
        return self._parsed


class RateLimitingConfig(Strict):
    enabled: bool = True
    default_cost: float = 1.0
    rules: list[RateLimitRule] = Field(default_factory=list)
