"""Bandit experiments on simulated arms: the production track-and-stop policy (the same
`compute_state`) against arms with known means, next to the fixed-horizon A/B test a user
would otherwise run on the same traffic. How to choose `delta`, `epsilon` and
`min_samples_per_variant` before going live."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.stats import norm

from tensorzero_ray.experimentation.track_and_stop import ArmStatistics, TrackAndStopSettings, compute_state


@dataclass(frozen=True)
class Scenario:
    kind: str  # "bernoulli" or "gaussian"
    means: tuple[float, ...]
    stds: tuple[float, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"arm{i}" for i in range(len(self.means)))

    @property
    def best(self) -> int:
        return int(np.argmax(self.means))

    def variances(self) -> list[float]:
        if self.kind == "bernoulli":
            return [p * (1 - p) for p in self.means]
        return [s * s for s in self.stds]

    def draw(self, rng: np.random.Generator, arms: np.ndarray) -> np.ndarray:
        means = np.asarray(self.means)[arms]
        if self.kind == "bernoulli":
            return (rng.random(len(arms)) < means).astype(float)
        return rng.normal(means, np.asarray(self.stds)[arms])

    @classmethod
    def parse(cls, text: str) -> "Scenario":
        """`bernoulli:0.5,0.6` or `gaussian:0/1,0.2/1` (mean/std per arm)."""
        kind, _, arms = text.partition(":")
        if kind == "bernoulli":
            means = tuple(float(a) for a in arms.split(","))
            if len(means) < 2 or not all(0 <= p <= 1 for p in means):
                raise ValueError("bernoulli arms need two or more probabilities in [0, 1], e.g. bernoulli:0.5,0.6")
            return cls(kind, means)
        if kind == "gaussian":
            pairs = [a.split("/") for a in arms.split(",")]
            if len(pairs) < 2 or any(len(p) != 2 or float(p[1]) <= 0 for p in pairs):
                raise ValueError("gaussian arms need mean/std pairs with std > 0, e.g. gaussian:0/1,0.2/1")
            return cls(kind, tuple(float(m) for m, _ in pairs), tuple(float(s) for _, s in pairs))
        raise ValueError(f"unknown arm kind `{kind}` (use bernoulli:... or gaussian:...)")


@dataclass(frozen=True)
class PolicySettings:
    delta: float = 0.05
    epsilon: float = 0.0
    min_samples_per_variant: int = 10
    min_prob: float = 0.0
    # Pulls between two updates of the state (traffic per `update_period_s`).
    batch: int = 50
    horizon: int = 20_000


@dataclass(frozen=True)
class Outcome:
    stopped: bool
    correct: bool
    samples: int
    regret: float
    ab_correct: bool
    ab_regret: float


def ab_samples_per_arm(scenario: Scenario, settings: PolicySettings, power: float = 0.8) -> int:
    """The textbook fixed-horizon sample size: detect the smallest gap to the best arm at
    level delta with the given power (two-sided z-test)."""
    best = scenario.best
    variances = scenario.variances()
    z = norm.ppf(1 - settings.delta / 2) + norm.ppf(power)
    needed = 1
    for i, mean in enumerate(scenario.means):
        if i == best:
            continue
        gap = max(scenario.means[best] - mean, settings.epsilon, 1e-9)
        needed = max(needed, math.ceil(z * z * (variances[best] + variances[i]) / (gap * gap)))
    return needed


def simulate(scenario: Scenario, settings: PolicySettings, seed: int, ab_per_arm: int) -> Outcome:
    """One run of track-and-stop and one of the A/B test, each over `horizon` pulls."""
    rng = np.random.default_rng(seed)
    names = scenario.names
    k = len(names)
    gaps = scenario.means[scenario.best] - np.asarray(scenario.means)
    policy = TrackAndStopSettings(
        candidates=names,
        min_samples_per_variant=settings.min_samples_per_variant,
        delta=settings.delta,
        epsilon=settings.epsilon,
        min_prob=settings.min_prob,
    )
    counts, sums, squares = np.zeros(k), np.zeros(k), np.zeros(k)
    pulls, regret, winner = 0, 0.0, None
    while pulls < settings.horizon:
        state = compute_state(policy, [_arm(names[i], counts[i], sums[i], squares[i]) for i in range(k)])
        if state.winner is not None and not state.nursery:
            winner = names.index(state.winner)
            regret += (settings.horizon - pulls) * gaps[winner]
            break
        shares = state.probabilities()
        p = np.array([shares.get(name, 0.0) for name in names])
        size = min(settings.batch, settings.horizon - pulls)
        arms = rng.choice(k, size=size, p=p / p.sum())
        rewards = scenario.draw(rng, arms)
        np.add.at(counts, arms, 1)
        np.add.at(sums, arms, rewards)
        np.add.at(squares, arms, rewards * rewards)
        regret += float(gaps[arms].sum())
        pulls += size
    stopped = winner is not None
    samples = pulls
    correct = stopped and gaps[winner] <= settings.epsilon

    # The A/B test: equal traffic until each arm has its sample size, then the empirical best.
    ab_pulls = min(ab_per_arm * k, settings.horizon)
    ab_arms = np.arange(ab_pulls) % k
    ab_rewards = scenario.draw(rng, ab_arms)
    ab_means = np.array([ab_rewards[ab_arms == i].mean() if np.any(ab_arms == i) else -np.inf for i in range(k)])
    chosen = int(np.argmax(ab_means))
    ab_regret = float(gaps[ab_arms].sum()) + (settings.horizon - ab_pulls) * gaps[chosen]
    return Outcome(stopped, bool(correct), samples, float(regret), bool(gaps[chosen] <= settings.epsilon), ab_regret)


def _arm(name: str, count: float, total: float, squares: float) -> ArmStatistics:
    n = int(count)
    if n == 0:
        return ArmStatistics(name, 0, 0.0, 0.0)
    mean = total / n
    variance = max((squares - n * mean * mean) / (n - 1), 0.0) if n > 1 else 0.0
    return ArmStatistics(name, n, mean, variance)


def run_replicates(scenario: Scenario, settings: PolicySettings, seeds: list[int], ab_per_arm: int) -> list[Outcome]:
    return [simulate(scenario, settings, seed, ab_per_arm) for seed in seeds]


@dataclass(frozen=True)
class Summary:
    delta: float
    runs: int
    error_rate: float
    error_low: float
    error_high: float
    stopped_share: float
    mean_samples: float
    p50_samples: float
    p90_samples: float
    mean_regret: float
    ab_error_rate: float
    ab_mean_regret: float
    ab_samples_per_arm: int


def summarize(delta: float, outcomes: list[Outcome], ab_per_arm: int) -> Summary:
    """Errors count runs that stopped on a wrong arm; a run that never stopped is reported
    apart (stopped share), as it shipped nothing."""
    from tensorzero_ray.statistics import wilson

    runs = len(outcomes)
    wrong = sum(1 for o in outcomes if o.stopped and not o.correct)
    interval = wilson(runs, wrong)
    samples = np.array([o.samples for o in outcomes if o.stopped] or [math.nan])
    return Summary(
        delta=delta,
        runs=runs,
        error_rate=wrong / runs,
        error_low=interval.low,
        error_high=interval.high,
        stopped_share=sum(o.stopped for o in outcomes) / runs,
        mean_samples=float(np.mean(samples)),
        p50_samples=float(np.percentile(samples, 50)),
        p90_samples=float(np.percentile(samples, 90)),
        mean_regret=float(np.mean([o.regret for o in outcomes])),
        ab_error_rate=sum(1 for o in outcomes if not o.ab_correct) / runs,
        ab_mean_regret=float(np.mean([o.ab_regret for o in outcomes])),
        ab_samples_per_arm=ab_per_arm,
    )


def with_delta(settings: PolicySettings, delta: float) -> PolicySettings:
    return replace(settings, delta=delta)
