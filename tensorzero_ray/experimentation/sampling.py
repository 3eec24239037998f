"""Episode-sticky variant sampling (spec §8.1): the draw is a hash of function and episode,
so an episode keeps its variant without any stored state. Adaptive experiments add time: an
episode is sampled with the probabilities in effect when it began."""

from __future__ import annotations

import bisect
import hashlib
import time
import uuid
from collections.abc import Collection

from tensorzero_ray.config.functions import AdaptiveExperimentation


def episode_draw(function_name: str, episode_id: uuid.UUID) -> float:
    """u in [0, 1): first four bytes of SHA-256(function_name || episode_id bytes)."""
    digest = hashlib.sha256(function_name.encode() + episode_id.bytes).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


class VariantSampler:
    """Weighted candidates first (renormalised over what is still active), then fallbacks in
    order. With no weights at all, uniform over every variant."""

    def __init__(self, weights: dict[str, float], fallbacks: list[str]):
        self.weights = weights
        self.fallbacks = fallbacks

    def choose(self, u: float, active: Collection[str], began_ms: int | None = None) -> str | None:
        candidates = sorted(name for name in active if self.weights.get(name, 0) > 0)
        total = sum(self.weights[name] for name in candidates)
        if total > 0:
            target = u * total
            cumulative = 0.0
            for name in candidates:
                cumulative += self.weights[name]
                if cumulative > target:
                    return name
            return candidates[-1]
        for name in self.fallbacks:
            if name in active:
                return name
        return None

    def probabilities(self) -> dict[str, float]:
        total = sum(self.weights.values())
        if total <= 0:
            return {name: (1.0 if i == 0 else 0.0) for i, name in enumerate(self.fallbacks)}
        return {name: weight / total for name, weight in self.weights.items()}


class AdaptiveSampler:
    """Track-and-stop's probabilities over time, as the experiment controller publishes them.
    An episode is sampled with its hash draw and the probabilities in effect when it began
    (its UUIDv7 time), so every replica, before and after a restart, gives it the same
    variant while the probabilities move. Until the first update: uniform over candidates,
    which is the nursery's share."""

    def __init__(self, candidates: list[str], fallbacks: list[str]):
        self.fallbacks = fallbacks
        self._starts: list[int] = [0]
        self._samplers: list[VariantSampler] = [VariantSampler({name: 1.0 for name in candidates}, fallbacks)]

    def apply(self, effective_from_ms: int, probabilities: dict[str, float]) -> None:
        at = bisect.bisect_right(self._starts, effective_from_ms)
        self._starts.insert(at, effective_from_ms)
        self._samplers.insert(at, VariantSampler(dict(probabilities), self.fallbacks))

    def _at(self, began_ms: int | None) -> VariantSampler:
        moment = began_ms if began_ms is not None else int(time.time() * 1000)
        return self._samplers[max(0, bisect.bisect_right(self._starts, moment) - 1)]

    def choose(self, u: float, active: Collection[str], began_ms: int | None = None) -> str | None:
        return self._at(began_ms).choose(u, active)

    def probabilities(self, at_ms: int | None = None) -> dict[str, float]:
        """In effect at `at_ms` (default: now)."""
        return self._at(at_ms).probabilities()


def build_sampler(function_name: str, variants: dict, experimentation) -> VariantSampler | AdaptiveSampler:
    """The sampler for a function's config: experimentation table, legacy weights, or uniform."""
    names = sorted(variants)
    if experimentation is None:
        if any(v.weight is not None for v in variants.values()):
            weights = {n: v.weight for n, v in variants.items() if v.weight is not None and v.weight > 0}
            fallbacks = sorted(n for n, v in variants.items() if v.weight is None)
            return VariantSampler(weights, fallbacks)
        return VariantSampler({name: 1.0 for name in names}, [])
    if isinstance(experimentation, AdaptiveExperimentation):
        return AdaptiveSampler(list(experimentation.candidate_variants), list(experimentation.fallback_variants))
    return VariantSampler(experimentation.weights(names), list(experimentation.fallback_variants))
