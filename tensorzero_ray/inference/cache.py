"""The inference cache (spec §3.18): each model-provider request is keyed by a hash of the model,
the provider and the request as sent; a hit answers without calling the provider and costs
nothing. Stored in ClickHouse's `ModelInferenceCache`, with the latest entries also kept in
the replica's memory so a repeated request does not wait on a query. A read that fails is a
miss, never a failed request; writes go through the outbox like every other row."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import TypeAdapter

from tensorzero_ray.store.rows import ModelInferenceCacheRow
from tensorzero_ray.types.inference import CacheOptions
from tensorzero_ray.types.model import ModelInferenceRequest, ModelInferenceResult, ResponseBlock

logger = logging.getLogger(__name__)

BLOCKS = TypeAdapter(list[ResponseBlock])
LOOKUP_SQL = (
    "SELECT output, raw_request, raw_response, finish_reason, toUnixTimestamp(timestamp) AS stored_at "
    "FROM ModelInferenceCache "
    "WHERE short_cache_key = {short:UInt64} AND long_cache_key = {long:String} AND NOT is_deleted "
    "{fresh}ORDER BY timestamp DESC LIMIT 1"
)


@dataclass(frozen=True)
class CacheKey:
    short: int
    long: str


def cache_key(model_name: str, provider_name: str, request: ModelInferenceRequest) -> CacheKey:
    """Streaming and non-streaming requests share entries: a stream replays a stored answer."""
    sent = orjson.dumps(request.model_dump(mode="json", exclude={"stream"}), option=orjson.OPT_SORT_KEYS)
    digest = hashlib.blake2b(model_name.encode() + b"\0" + provider_name.encode() + b"\0" + sent, digest_size=32)
    raw = digest.digest()
    return CacheKey(int.from_bytes(raw[:8], "little"), raw.hex())


@dataclass(frozen=True)
class CachedAnswer:
    output: list
    raw_request: str
    raw_response: str
    finish_reason: str | None


class RecentAnswers:
    """The replica's latest cache entries, least recently used out first."""

    def __init__(self, capacity: int = 2048):
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[float, CachedAnswer]] = OrderedDict()

    def get(self, key: str, max_age_s: int | None) -> CachedAnswer | None:
        found = self._entries.get(key)
        if found is None or (max_age_s is not None and time.time() - found[0] > max_age_s):
            return None
        self._entries.move_to_end(key)
        return found[1]

    def put(self, key: str, answer: CachedAnswer, stored_at: float) -> None:
        self._entries[key] = (stored_at, answer)
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)


class InferenceCache:
    """One request's view of the cache: its mode and age limit over the store."""

    def __init__(self, store: Any, options: CacheOptions, dryrun: bool, recent: RecentAnswers | None = None):
        self.store = store
        self.recent = recent or RecentAnswers()
        self.options = options
        self.reads = options.enabled in ("on", "read_only")
        # A dry run reads but never writes (spec §3.18).
        self.writes = options.enabled in ("on", "write_only") and not dryrun

    async def lookup(self, model_name: str, provider_name: str, request: ModelInferenceRequest) -> CachedAnswer | None:
        if not self.reads:
            return None
        key = cache_key(model_name, provider_name, request)
        known = self.recent.get(key.long, self.options.max_age_s)
        if known is not None:
            return known
        fresh = ""
        params: dict[str, Any] = {"short": key.short, "long": key.long}
        if self.options.max_age_s is not None:
            fresh = "AND timestamp >= now() - toIntervalSecond({age:UInt32}) "
            params["age"] = self.options.max_age_s
        try:
            rows = await self.store.query(LOOKUP_SQL.replace("{fresh}", fresh), params)
        except Exception as exc:  # noqa: BLE001 - a cache that cannot answer is a miss
            logger.warning("inference cache read failed, calling the provider: %s", exc)
            return None
        if not rows:
            return None
        row = rows[0]
        answer = CachedAnswer(
            BLOCKS.validate_json(row["output"]), row["raw_request"], row["raw_response"], row["finish_reason"]
        )
        self.recent.put(key.long, answer, float(row["stored_at"]))
        return answer

    async def remember(self, request: ModelInferenceRequest, result: ModelInferenceResult) -> None:
        if not self.writes or result.cached:
            return
        key = cache_key(result.model_name, result.model_provider_name, request)
        row = ModelInferenceCacheRow(
            short_cache_key=key.short,
            long_cache_key=key.long,
            output=orjson.dumps([b.model_dump(mode="json", exclude_none=True) for b in result.output]).decode(),
            raw_request=result.raw_request,
            raw_response=result.raw_response,
            input_tokens=result.usage.input_tokens,
            output_tokens=result.usage.output_tokens,
            finish_reason=result.finish_reason,
        )
        answer = CachedAnswer(list(result.output), result.raw_request, result.raw_response, result.finish_reason)
        self.recent.put(key.long, answer, time.time())
        try:
            await self.store.record([row])
        except Exception as exc:  # noqa: BLE001 - the answer stands; only its cache entry is missing
            logger.warning("inference cache write failed: %s", exc)
