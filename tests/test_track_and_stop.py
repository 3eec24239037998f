"""Track-and-stop's state machine and stopping rule on fixed statistics (spec §8.2): nursery,
bandits, stopping with a winner, metrics to minimise, ties, zero variance, one candidate, the
min_prob floor; and the simulation's error rate staying under delta on a case with a known
answer."""

from __future__ import annotations

import math

import pytest

from tensorzero_ray.experimentation.simulation import (
    PolicySettings,
    Scenario,
    ab_samples_per_arm,
    run_replicates,
    summarize,
)
from tensorzero_ray.experimentation.track_and_stop import (
    ArmStatistics,
    TrackAndStopSettings,
    compute_state,
    stopping_check,
)

ABC = ("a", "b", "c")


def settings(**overrides) -> TrackAndStopSettings:
    return TrackAndStopSettings(**{"candidates": ABC, "min_samples_per_variant": 10, **overrides})


def test_without_feedback_every_candidate_is_in_the_nursery():
    state = compute_state(settings(), [])
    assert state.kind == "nursery_only" and state.nursery == ABC
    assert state.probabilities() == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    assert state.to_json() == {"type": "nursery_only", "variants": ["a", "b", "c"]}


def test_feedback_on_other_variants_is_ignored_and_one_candidate_is_stopped_at_once():
    only = compute_state(settings(candidates=("a",)), [ArmStatistics("z", 100, 0.9, 0.1)])
    assert only.kind == "stopped" and only.winner == "a" and only.probabilities() == {"a": 1.0}


def test_nursery_keeps_about_one_over_k_while_the_bandits_share_the_rest():
    arms = [ArmStatistics("a", 40, 0.7, 0.21), ArmStatistics("b", 40, 0.4, 0.24), ArmStatistics("c", 3, 0.0, 0.0)]
    state = compute_state(settings(), arms)
    assert state.kind == "nursery_and_bandits" and state.nursery == ("c",)
    shares = state.probabilities()
    assert shares["c"] == pytest.approx(1 / 3)
    assert shares["a"] + shares["b"] == pytest.approx(2 / 3)
    assert not state.check.stopped


def test_a_clear_winner_stops_the_experiment():
    arms = [ArmStatistics("a", 400, 0.9, 0.09), ArmStatistics("b", 400, 0.1, 0.09), ArmStatistics("c", 400, 0.5, 0.25)]
    state = compute_state(settings(), arms)
    assert state.kind == "stopped" and state.winner == "a"
    assert state.probabilities() == {"a": 1.0}
    # Z against the closest challenger (c): gap 0.4, spread 0.09/400 + 0.25/400.
    assert state.check.statistic == pytest.approx(0.4**2 / (2 * (0.09 + 0.25) / 400))
    assert state.check.threshold == pytest.approx(math.log((1 + math.log(1200)) / 0.05))


def test_a_stopped_experiment_with_a_new_variant_keeps_the_newcomer_in_the_nursery():
    arms = [ArmStatistics("a", 400, 0.9, 0.09), ArmStatistics("b", 400, 0.1, 0.09)]
    state = compute_state(settings(), arms)
    assert state.kind == "nursery_and_stopped" and state.nursery == ("c",) and state.winner == "a"
    assert state.probabilities() == pytest.approx({"c": 1 / 3, "a": 2 / 3})
    assert state.to_json() == {"type": "nursery_and_stopped", "nursery": ["c"], "stopped_variant_name": "a"}


def test_a_metric_to_minimise_picks_the_lowest_mean():
    arms = [ArmStatistics("a", 400, 0.9, 0.09), ArmStatistics("b", 400, 0.1, 0.09)]
    state = compute_state(settings(candidates=("a", "b"), maximize=False), arms)
    assert state.winner == "b"


def test_ties_never_stop_and_split_the_traffic():
    arms = [ArmStatistics("a", 500, 0.5, 0.25), ArmStatistics("b", 500, 0.5, 0.25)]
    state = compute_state(settings(candidates=("a", "b")), arms)
    assert state.kind == "bandits_only" and state.check.statistic == 0.0
    assert state.probabilities() == pytest.approx({"a": 0.5, "b": 0.5}, abs=1e-3)


def test_a_tie_goes_to_the_more_precise_arm_then_to_the_first():
    assert stopping_check([ArmStatistics("a", 10, 0.5, 0.2), ArmStatistics("b", 90, 0.5, 0.2)], 0.0, 0.05).leader == "b"
    assert stopping_check([ArmStatistics("a", 10, 0.5, 0.2), ArmStatistics("b", 10, 0.5, 0.2)], 0.0, 0.05).leader == "a"


def test_zero_variance_is_floored_so_constant_arms_separate():
    arms = [ArmStatistics("a", 20, 1.0, 0.0), ArmStatistics("b", 20, 0.0, 0.0)]
    state = compute_state(settings(candidates=("a", "b")), arms)
    assert state.kind == "stopped" and state.winner == "a"


def test_epsilon_lets_a_near_tie_stop_on_either_arm():
    arms = [ArmStatistics("a", 2000, 0.50, 0.25), ArmStatistics("b", 2000, 0.49, 0.25)]
    assert not compute_state(settings(candidates=("a", "b")), arms).check.stopped
    assert compute_state(settings(candidates=("a", "b"), epsilon=0.1), arms).winner == "a"


def test_the_allocation_favours_the_arms_that_are_hard_to_separate_and_respects_min_prob():
    arms = [
        ArmStatistics("a", 200, 0.70, 0.21),
        ArmStatistics("b", 200, 0.30, 0.21),
        ArmStatistics("c", 200, 0.68, 0.22),
    ]
    free = compute_state(settings(), arms).probabilities()
    assert free["a"] > free["b"] and free["c"] > free["b"]
    floored = compute_state(settings(min_prob=0.25), arms).probabilities()
    assert min(floored.values()) >= 0.25 - 1e-6 and sum(floored.values()) == pytest.approx(1.0)


def test_the_simulated_error_rate_stays_under_delta_on_a_known_case():
    scenario = Scenario.parse("bernoulli:0.4,0.6")
    policy = PolicySettings(delta=0.1, batch=25, horizon=5000)
    ab = ab_samples_per_arm(scenario, policy)
    outcomes = run_replicates(scenario, policy, list(range(300)), ab)
    summary = summarize(0.1, outcomes, ab)
    assert summary.stopped_share > 0.95
    assert summary.error_rate < 0.1
    # Stopping early on a clear gap costs less than equal traffic until a fixed sample size.
    assert summary.mean_regret < summary.ab_mean_regret


@pytest.mark.parametrize(
    "text, fragment",
    [("bernoulli:1.5,0.2", "in [0, 1]"), ("gaussian:0/0,1/1", "std > 0"), ("poisson:1,2", "unknown arm kind")],
)
def test_bad_arms_are_named(text, fragment):
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        Scenario.parse(text)
