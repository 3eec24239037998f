"""Track-and-stop (spec §8.2): from per-variant feedback statistics to sampling probabilities,
a stopping decision and a winner. Pure functions over numbers, so the experiment controller
(stored feedback) and the simulation job (simulated arms) run exactly the same policy."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.optimize import minimize

VARIANCE_FLOOR = 1e-12
MIN_PROB_FLOOR = 1e-6
# Pulls the allocation slightly towards uniform, so near-ties do not starve an arm.
REGULARIZER = 0.01

StateKind = Literal["nursery_only", "bandits_only", "nursery_and_bandits", "stopped", "nursery_and_stopped"]


@dataclass(frozen=True)
class ArmStatistics:
    variant: str
    count: int
    mean: float
    # Sample variance (n - 1); 0 for fewer than two samples.
    variance: float


@dataclass(frozen=True)
class TrackAndStopSettings:
    candidates: tuple[str, ...]
    min_samples_per_variant: int = 10
    delta: float = 0.05
    epsilon: float = 0.0
    min_prob: float = 0.0
    maximize: bool = True

    @classmethod
    def from_config(cls, experimentation, maximize: bool) -> "TrackAndStopSettings":
        return cls(
            candidates=tuple(experimentation.candidate_variants),
            min_samples_per_variant=experimentation.min_samples_per_variant,
            delta=experimentation.delta,
            epsilon=experimentation.epsilon,
            min_prob=experimentation.min_prob,
            maximize=maximize,
        )


@dataclass(frozen=True)
class StoppingCheck:
    leader: str
    # The smallest GLR statistic over challengers, and the bar it has to clear.
    statistic: float
    threshold: float

    @property
    def stopped(self) -> bool:
        return self.statistic > self.threshold


@dataclass(frozen=True)
class TrackAndStopState:
    kind: StateKind
    nursery: tuple[str, ...] = ()
    # Over the bandit arms only; sums to 1 when there are any.
    bandit_probabilities: dict[str, float] = field(default_factory=dict)
    winner: str | None = None
    check: StoppingCheck | None = None
    arms: tuple[ArmStatistics, ...] = ()

    def probabilities(self) -> dict[str, float]:
        """What each candidate gets: nursery variants about 1/K each, the bandit part the rest."""
        bandit_arms = len(self.bandit_probabilities) if self.winner is None else len(self._stopped_arms())
        total = len(self.nursery) + bandit_arms
        if total == 0:
            return {}
        found = {name: 1.0 / total for name in self.nursery}
        bandit_mass = bandit_arms / total
        if self.winner is not None:
            found[self.winner] = found.get(self.winner, 0.0) + bandit_mass
            return found
        for name, p in self.bandit_probabilities.items():
            found[name] = found.get(name, 0.0) + bandit_mass * p
        return found

    def _stopped_arms(self) -> list[str]:
        return [a.variant for a in self.arms if a.variant not in self.nursery] or [self.winner]

    def to_json(self) -> dict:
        """TensorZero's serialised state (`type` plus its fields)."""
        if self.kind == "nursery_only":
            return {"type": self.kind, "variants": list(self.nursery)}
        if self.kind == "bandits_only":
            return {"type": self.kind, "sampling_probabilities": self.bandit_probabilities}
        if self.kind == "nursery_and_bandits":
            return {
                "type": self.kind,
                "nursery": list(self.nursery),
                "sampling_probabilities": self.bandit_probabilities,
            }
        if self.kind == "stopped":
            return {"type": self.kind, "winner_variant_name": self.winner}
        return {"type": self.kind, "nursery": list(self.nursery), "stopped_variant_name": self.winner}


def compute_state(settings: TrackAndStopSettings, statistics: list[ArmStatistics]) -> TrackAndStopState:
    """The state for these statistics (feedback of variants that are not candidates is ignored)."""
    by_name = {s.variant: s for s in statistics if s.variant in settings.candidates}
    arms = tuple(by_name.get(name, ArmStatistics(name, 0, 0.0, 0.0)) for name in settings.candidates)
    if len(arms) == 1:
        return TrackAndStopState("stopped", winner=arms[0].variant, arms=arms)
    nursery = tuple(a.variant for a in arms if a.count < settings.min_samples_per_variant)
    bandits = [a for a in arms if a.count >= settings.min_samples_per_variant]
    if not bandits:
        return TrackAndStopState("nursery_only", nursery=nursery, arms=arms)
    if len(bandits) == 1:
        return TrackAndStopState("nursery_and_bandits", nursery, {bandits[0].variant: 1.0}, arms=arms)
    oriented = [_oriented(a, settings.maximize) for a in bandits]
    check = stopping_check(oriented, settings.epsilon, settings.delta)
    if check.stopped:
        kind: StateKind = "nursery_and_stopped" if nursery else "stopped"
        return TrackAndStopState(kind, nursery, winner=check.leader, check=check, arms=arms)
    probabilities = optimal_allocation(oriented, settings.epsilon, max(settings.min_prob, MIN_PROB_FLOOR))
    kind = "nursery_and_bandits" if nursery else "bandits_only"
    return TrackAndStopState(kind, nursery, probabilities, check=check, arms=arms)


def _oriented(arm: ArmStatistics, maximize: bool) -> ArmStatistics:
    """Higher is better from here on: a metric to minimise is flipped."""
    return arm if maximize else ArmStatistics(arm.variant, arm.count, -arm.mean, arm.variance)


def leader_index(arms: list[ArmStatistics]) -> int:
    """Highest mean; ties go to the more precise estimate, then to the earlier arm."""
    return min(
        range(len(arms)),
        key=lambda i: (-arms[i].mean, max(arms[i].variance, VARIANCE_FLOOR) / max(arms[i].count, 1), i),
    )


def stopping_check(arms: list[ArmStatistics], epsilon: float, delta: float) -> StoppingCheck:
    """The GLR statistic of the leader against its closest challenger, and the threshold
    ln((1 + ln N) / delta) it must exceed (N: all pulls)."""
    lead = leader_index(arms)
    leader = arms[lead]
    statistic = math.inf
    for i, challenger in enumerate(arms):
        if i == lead:
            continue
        gap = leader.mean - challenger.mean + epsilon
        spread = _floor(leader.variance) / leader.count + _floor(challenger.variance) / challenger.count
        statistic = min(statistic, gap * gap / (2 * spread) if gap > 0 else 0.0)
    total = sum(a.count for a in arms)
    threshold = math.log((1 + math.log(max(total, 1))) / delta)
    return StoppingCheck(leader.variant, statistic, threshold)


def optimal_allocation(arms: list[ArmStatistics], epsilon: float, min_prob: float) -> dict[str, float]:
    """Sampling proportions that separate the leader from every challenger (within epsilon)
    with the fewest samples: minimise max_k (s_L/w_L + s_k/w_k) / gap_k^2 over the simplex with
    w >= min_prob. Convex; solved with SciPy's SLSQP in epigraph form."""
    k = len(arms)
    lead = leader_index(arms)
    variances = np.array([_floor(a.variance) for a in arms])
    means = np.array([a.mean for a in arms])
    gaps = np.maximum(means[lead] - means + epsilon, 1e-9)
    challengers = [i for i in range(k) if i != lead]
    uniform = np.full(k, 1.0 / k)

    def cost(w: np.ndarray, i: int) -> float:
        return (variances[lead] / w[lead] + variances[i] / w[i]) / gaps[i] ** 2

    # Scaled so the uniform allocation costs 1: keeps the solver well conditioned.
    scale = max(cost(uniform, i) for i in challengers)

    def objective(x: np.ndarray) -> float:
        return x[k] + REGULARIZER * k * float(np.sum((x[:k] - uniform) ** 2))

    def objective_grad(x: np.ndarray) -> np.ndarray:
        grad = np.zeros(k + 1)
        grad[:k] = 2 * REGULARIZER * k * (x[:k] - uniform)
        grad[k] = 1.0
        return grad

    def constraint(i: int):
        def value(x: np.ndarray) -> float:
            return x[k] - cost(x[:k], i) / scale

        def jacobian(x: np.ndarray) -> np.ndarray:
            grad = np.zeros(k + 1)
            grad[lead] = variances[lead] / (x[lead] ** 2 * gaps[i] ** 2 * scale)
            grad[i] = variances[i] / (x[i] ** 2 * gaps[i] ** 2 * scale)
            grad[k] = 1.0
            return grad

        return {"type": "ineq", "fun": value, "jac": jacobian}

    constraints = [constraint(i) for i in challengers]
    constraints.append(
        {"type": "eq", "fun": lambda x: float(np.sum(x[:k]) - 1.0), "jac": lambda x: np.r_[np.ones(k), 0.0]}
    )
    start = np.r_[uniform, 1.0]
    bounds = [(min_prob, 1.0)] * k + [(0.0, None)]
    result = minimize(
        objective, start, jac=objective_grad, bounds=bounds, constraints=constraints, method="SLSQP",
        options={"maxiter": 200, "ftol": 1e-10},
    )  # fmt: skip
    weights = np.clip(result.x[:k], min_prob, 1.0) if np.all(np.isfinite(result.x)) else uniform
    weights = weights / weights.sum()
    return {arm.variant: float(w) for arm, w in zip(arms, weights)}


def _floor(variance: float) -> float:
    return max(variance, VARIANCE_FLOOR)
