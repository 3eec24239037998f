"""Variant sampling: weights hold over many episodes, an episode keeps its variant, and
failures re-sample with the same draw before fallbacks are taken in order."""

from __future__ import annotations

import hashlib
from collections import Counter

from tensorzero_ray.experimentation.sampling import VariantSampler, build_sampler, episode_draw
from tensorzero_ray.ids import uuid7


def test_draw_is_sha256_of_function_and_episode():
    episode = uuid7()
    digest = hashlib.sha256(b"my_function" + episode.bytes).digest()
    assert episode_draw("my_function", episode) == int.from_bytes(digest[:4], "big") / 2**32


def test_weights_hold_over_many_episodes():
    sampler = VariantSampler({"a": 3.0, "b": 1.0}, ["c"])
    counts = Counter(sampler.choose(episode_draw("f", uuid7()), {"a", "b", "c"}) for _ in range(8000))
    assert set(counts) == {"a", "b"}
    share_a = counts["a"] / 8000
    assert abs(share_a - 0.75) < 0.03, counts


def test_same_episode_always_gets_the_same_variant():
    sampler = VariantSampler({"a": 1.0, "b": 1.0, "c": 1.0}, [])
    for _ in range(50):
        episode = uuid7()
        picks = {sampler.choose(episode_draw("f", episode), {"a", "b", "c"}) for _ in range(5)}
        assert len(picks) == 1


def test_different_functions_draw_independently():
    episode = uuid7()
    assert episode_draw("f", episode) != episode_draw("g", episode)


def test_failed_candidate_resamples_then_fallbacks_in_order():
    sampler = VariantSampler({"a": 1.0, "b": 1.0}, ["x", "y"])
    active = {"a", "b", "x", "y"}
    first = sampler.choose(0.1, active)
    assert first == "a"
    active.discard("a")
    assert sampler.choose(0.1, active) == "b"
    active.discard("b")
    assert sampler.choose(0.1, active) == "x"
    active.discard("x")
    assert sampler.choose(0.1, active) == "y"
    active.discard("y")
    assert sampler.choose(0.1, active) is None


def test_default_is_uniform_over_sorted_names():
    class V:
        weight = None

    sampler = build_sampler("f", {"b": V(), "a": V(), "c": V()}, None)
    assert sampler.choose(0.0, {"a", "b", "c"}) == "a"
    assert sampler.choose(0.5, {"a", "b", "c"}) == "b"
    assert sampler.choose(0.99, {"a", "b", "c"}) == "c"


def test_legacy_weights_make_unweighted_variants_fallbacks_and_zero_weight_unreachable():
    class V:
        def __init__(self, weight):
            self.weight = weight

    sampler = build_sampler("f", {"main": V(1.0), "off": V(0.0), "backup": V(None)}, None)
    assert sampler.choose(0.9, {"main", "off", "backup"}) == "main"
    assert sampler.choose(0.9, {"off", "backup"}) == "backup"
    assert sampler.choose(0.9, {"off"}) is None
