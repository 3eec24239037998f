"""A replica's side of rate limiting: which buckets a request draws on (its rules, scopes and
priorities), and the capacity this replica holds of each, leased from the ledger in blocks of
a twentieth of a bucket and given back when unused for a second. A request is checked
against every bucket it draws on before anything is sent to a provider; its token estimate
(input characters / 4 plus `max_tokens`) and its cost estimate (`default_cost`) are settled
against the real usage and cost afterwards."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from tensorzero_ray.config.rate_limiting import EACH, TOTAL, Limit, RateLimitingConfig, RateLimitRule
from tensorzero_ray.errors import InvalidRequest, TensorZeroError

API_KEY_TAG = "tensorzero::api_key_public_id"
LEASE_S = 1.0
BLOCK_SHARE = 1 / 20


class RateLimitMissingMaxTokens(InvalidRequest):
    kind = "RateLimitMissingMaxTokens"


class RateLimited(TensorZeroError):
    """Not retried, and no other variant is tried: every one would draw on the same limits."""

    status_code = 429
    kind = "RateLimitExceeded"

    @property
    def retryable(self) -> bool:
        return False


@dataclass
class Draw:
    key: str
    limit: Limit
    rule: int
    need: float


@dataclass
class Reservation:
    limiter: "RateLimiter"
    draws: list[Draw] = field(default_factory=list)

    def settle(self, used_tokens: int | None, cost: float | None) -> None:
        """Real tokens and cost in place of the estimates (unused estimate back, excess as a
        debt). Unknown usage or cost (no `cost` config on the provider) keeps the estimate."""
        used = {"tokens": used_tokens, "cost": cost}
        for draw in self.draws:
            actual = used.get(draw.limit.resource)
            if actual is not None:
                self.limiter._held[draw.key][0] += draw.need - actual

    def release(self) -> None:
        """The call never reached a provider: everything back."""
        for draw in self.draws:
            self.limiter._held[draw.key][0] += draw.need


class RateLimiter:
    def __init__(self, config: RateLimitingConfig, ledger):
        self.rules = config.rules if config.enabled else []
        self.default_cost = config.default_cost
        self.ledger = ledger
        # bucket key -> [tokens held here, when last leased]
        self._held: dict[str, list[float]] = {}
        self._leasing: dict[str, asyncio.Lock] = {}

    @property
    def active(self) -> bool:
        return bool(self.rules)

    def _draws(self, tags: dict[str, str], input_chars: int, max_tokens: int | None) -> list[Draw]:
        matching = [(i, rule, key) for i, rule in enumerate(self.rules) if (key := _scope_key(rule, tags)) is not None]
        ranked = [(i, r, k) for i, r, k in matching if not r.always]
        top = max((r.priority for _, r, _ in ranked), default=None)
        chosen = [(i, r, k) for i, r, k in matching if r.always or r.priority == top]
        draws = []
        for index, rule, scope in chosen:
            for limit in rule.limits:
                if limit.resource == "tokens":
                    if max_tokens is None:
                        raise RateLimitMissingMaxTokens(
                            f"Rate limit `{limit.name}` of rule {index} counts tokens: the request needs `max_tokens` "
                            "(in `params` or on the variant) so its tokens can be reserved (RateLimitMissingMaxTokens)"
                        )
                    need = input_chars // 4 + max_tokens
                elif limit.resource == "cost":
                    need = self.default_cost
                else:
                    need = 1
                draws.append(Draw(f"{index}/{limit.name}/{scope}", limit, index, need))
        return draws

    async def reserve(self, tags: dict[str, str], input_chars: int, max_tokens: int | None) -> Reservation:
        reservation = Reservation(self)
        await self._return_stale()
        for draw in self._draws(tags, input_chars, max_tokens):
            held = self._held.setdefault(draw.key, [0.0, time.monotonic()])
            if held[0] < draw.need:
                # One lease at a time per bucket: requests arriving meanwhile wait for it and
                # draw on it, rather than each leasing a block and stranding the rest.
                lock = self._leasing.setdefault(draw.key, asyncio.Lock())
                async with lock:
                    if held[0] < draw.need:
                        limit = draw.limit
                        granted, wait = await self.ledger.take(
                            draw.key,
                            limit.capacity,
                            limit.refill_per_s,
                            draw.need - held[0],
                            limit.capacity * BLOCK_SHARE,
                        )
                        if granted == 0:
                            reservation.release()
                            raise RateLimited(
                                f"Rate limit exceeded: `{limit.name} = {limit.capacity:g}` of rule {draw.rule}"
                                f"{_scope_words(draw.key)} has no capacity left; retry in {max(wait, 0.001):.3g} s"
                            )
                        held[0] += granted
                        held[1] = time.monotonic()
            held[0] -= draw.need
            reservation.draws.append(draw)
        return reservation

    async def _return_stale(self) -> None:
        """Capacity leased more than a second ago and not used goes back for other replicas."""
        now = time.monotonic()
        for key, held in list(self._held.items()):
            if now - held[1] >= LEASE_S and held[0] != 0:
                amount, held[0], held[1] = held[0], 0.0, now
                limit = self._limit(key)
                await self.ledger.give_back(key, limit.capacity, limit.refill_per_s, amount)

    def _limit(self, key: str) -> Limit:
        rule, name, _ = key.split("/", 2)
        return next(limit for limit in self.rules[int(rule)].limits if limit.name == name)


def _scope_key(rule: RateLimitRule, tags: dict[str, str]) -> str | None:
    """The bucket within the rule a request with these tags draws on, or None if it does not match."""
    parts = []
    for entry in rule.scope:
        if entry.api_key_public_id is not None:
            key = tags.get(API_KEY_TAG)
            if key is None or entry.api_key_public_id not in (EACH, key):
                return None
            parts.append(f"key={key}" if entry.api_key_public_id == EACH else f"key={entry.api_key_public_id}")
        else:
            value = tags.get(entry.tag_key)
            if value is None or entry.tag_value not in (EACH, TOTAL, value):
                return None
            parts.append(f"{entry.tag_key}={value if entry.tag_value == EACH else entry.tag_value}")
    return ",".join(parts)


def _scope_words(key: str) -> str:
    scope = key.split("/", 2)[2]
    return f" (scope {scope})" if scope else ""
