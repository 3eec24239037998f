"""How far to trust an LLM judge: its scores against people's scores of the same outputs.
Booleans: agreement with a Wilson interval, Cohen's kappa (agreement beyond what two raters
who ignore the outputs would reach by chance) and the confusion matrix; floats: correlation
and mean absolute difference."""

from __future__ import annotations

import math
from dataclasses import dataclass

from tensorzero_ray.statistics import wilson

# Judge scores carry the judge's inference; people's scores carry the human-feedback tag.
PAIRS_SQL = """
SELECT toString(judge.target_id) AS inference_id, toFloat64(judge.value) AS judge, toFloat64(human.value) AS human
FROM (
    SELECT target_id, argMax(value, toUInt128(id)) AS value FROM {table}
    WHERE metric_name = {{m:String}} AND mapContains(tags, 'tensorzero::evaluator_inference_id')
      AND NOT mapContains(tags, 'tensorzero::human_feedback')
    GROUP BY target_id
) AS judge
INNER JOIN (
    SELECT target_id, argMax(value, toUInt128(id)) AS value FROM {table}
    WHERE metric_name = {{m:String}} AND mapContains(tags, 'tensorzero::human_feedback')
    GROUP BY target_id
) AS human ON judge.target_id = human.target_id
"""


@dataclass(frozen=True)
class BooleanAgreement:
    count: int
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    kappa: float | None
    # confusion[judge][human]
    confusion: dict[bool, dict[bool, int]]


@dataclass(frozen=True)
class FloatAgreement:
    count: int
    correlation: float | None
    mean_absolute_difference: float


def boolean_agreement(pairs: list[tuple[bool, bool]]) -> BooleanAgreement | None:
    count = len(pairs)
    if count == 0:
        return None
    confusion = {j: {h: sum(1 for a, b in pairs if a == j and b == h) for h in (True, False)} for j in (True, False)}
    agree = confusion[True][True] + confusion[False][False]
    accuracy = wilson(count, agree)
    judge_yes = (confusion[True][True] + confusion[True][False]) / count
    human_yes = (confusion[True][True] + confusion[False][True]) / count
    chance = judge_yes * human_yes + (1 - judge_yes) * (1 - human_yes)
    kappa = None if chance >= 1 else (agree / count - chance) / (1 - chance)
    return BooleanAgreement(count, accuracy.mean, accuracy.low, accuracy.high, kappa, confusion)


def float_agreement(pairs: list[tuple[float, float]]) -> FloatAgreement | None:
    count = len(pairs)
    if count == 0:
        return None
    judge = [a for a, _ in pairs]
    human = [b for _, b in pairs]
    mj, mh = sum(judge) / count, sum(human) / count
    sj = math.sqrt(sum((a - mj) ** 2 for a in judge))
    sh = math.sqrt(sum((b - mh) ** 2 for b in human))
    correlation = None if sj == 0 or sh == 0 else sum((a - mj) * (b - mh) for a, b in pairs) / (sj * sh)
    return FloatAgreement(count, correlation, sum(abs(a - b) for a, b in pairs) / count)


def kappa_reading(kappa: float | None) -> str:
    """Landis and Koch's usual words for a kappa."""
    if kappa is None:
        return "undefined (everyone gave the same score)"
    for bound, words in ((0.0, "no better than chance"), (0.2, "slight"), (0.4, "fair"), (0.6, "moderate"),
                         (0.8, "substantial")):  # fmt: skip
        if kappa <= bound:
            return words
    return "almost perfect"
