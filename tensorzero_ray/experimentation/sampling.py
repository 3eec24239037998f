"""Episode-sticky variant sampling (spec §8.1): the draw is a hash of function and episode,
so an episode keeps its variant without any stored state."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Collection

from tensorzero_ray.config.functions import AdaptiveExperimentation

logger = logging.getLogger(__name__)


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

    def choose(self, u: float, active: Collection[str]) -> str | None:
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


def build_sampler(function_name: str, variants: dict, experimentation) -> VariantSampler:
    """The sampler for a function's config: experimentation table, legacy weights, or uniform."""
    names = sorted(variants)
    if experimentation is None:
        if any(v.weight is not None for v in variants.values()):
            weights = {n: v.weight for n, v in variants.items() if v.weight is not None and v.weight > 0}
            fallbacks = sorted(n for n, v in variants.items() if v.weight is None)
            return VariantSampler(weights, fallbacks)
        return VariantSampler({name: 1.0 for name in names}, [])
    if isinstance(experimentation, AdaptiveExperimentation):
        logger.warning(
            "function %s: adaptive (track-and-stop) experimentation needs stored feedback, which is "
            "not wired yet; sampling its candidates uniformly",
            function_name,
        )
    return VariantSampler(experimentation.weights(names), list(experimentation.fallback_variants))
