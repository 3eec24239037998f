"""What the UI's charts and statistics promise: Wilson intervals for proportions, round time
ticks, empty buckets as zero (counts) or gaps (measurements), short ids that tell ids apart,
and the metric a function page opens on."""

from __future__ import annotations

import re

import pytest

from tensorzero_ray.config.functions import AdaptiveExperimentation, ChatFunctionConfig
from tensorzero_ray.statistics import wilson
from tensorzero_ray.ui.charts import Series, line_chart, time_ticks
from tensorzero_ray.ui.observability_pages import default_metric
from tensorzero_ray.ui.queries import bucket_starts, with_gaps, zero_filled
from tensorzero_ray.ui.render import _short_id


@pytest.mark.parametrize(
    "count, successes, low, high",
    # Reference values of the 95% Wilson score interval.
    [(10, 10, 0.7225, 1.0), (10, 0, 0.0, 0.2775), (100, 50, 0.4038, 0.5962), (1, 1, 0.2065, 1.0)],
)
def test_wilson_intervals_for_proportions(count, successes, low, high):
    found = wilson(count, successes)
    assert found.mean == successes / count
    assert (round(found.low, 4), round(found.high, 4)) == (low, high)


def test_time_ticks_fall_on_round_times():
    start = 1_700_000_007.0  # 22:13:27 UTC
    ticks = time_ticks(start, start + 170)
    steps = {b - a for a, b in zip(ticks, ticks[1:])}
    assert steps == {30.0} and all(t % 30 == 0 for t in ticks)
    assert start <= ticks[0] and ticks[-1] <= start + 170
    hours = time_ticks(start, start + 5 * 3600)
    assert all(t % 3600 == 0 for t in hours) and 3 <= len(hours) <= 6


def test_counts_fill_empty_buckets_with_zero_and_measurements_leave_gaps():
    starts = bucket_starts((1000.0, 1049.0), 10)
    assert starts == [1000.0, 1010.0, 1020.0, 1030.0, 1040.0]
    assert zero_filled([(1000.0, 3.0), (1040.0, 1.0)], starts) == [
        (1000.0, 3.0), (1010.0, 0.0), (1020.0, 0.0), (1030.0, 0.0), (1040.0, 1.0)
    ]  # fmt: skip
    assert with_gaps([(1010.0, 12.0), (1030.0, 9.0)], starts) == [(1010.0, 12.0), (1020.0, None), (1030.0, 9.0)]


def test_a_gap_breaks_the_line_instead_of_bridging_it():
    chart = str(line_chart([Series("m", [(0.0, 1.0), (10.0, 2.0), (20.0, None), (30.0, 2.0), (40.0, 3.0)])],
                           title="t", y_label="ms"))  # fmt: skip
    assert chart.count("<polyline") == 2
    whole = str(line_chart([Series("m", [(0.0, 1.0), (10.0, 2.0), (20.0, 0.0), (30.0, 2.0)])], title="t", y_label="n"))
    assert whole.count("<polyline") == 1


def test_short_ids_keep_prefix_and_suffix():
    same_second = ["0196ff53-8b0c-7e72-a23a-2a1cd1a7a8e6", "0196ff53-8b0c-7e72-b111-000000004242"]
    shown = [_short_id(i) for i in same_second]
    assert shown == ["0196ff53…a8e6", "0196ff53…4242"]
    assert all(re.fullmatch(r"[0-9a-f]{8}…[0-9a-f]{4}", s) for s in shown)


def test_the_default_metric_is_the_experiments_then_the_one_with_data():
    metrics = ["accuracy", "task_success", "thumbs_up"]
    plain = ChatFunctionConfig(type="chat", variants={})
    assert default_metric(plain, metrics, {"thumbs_up": 12, "task_success": 3}) == "thumbs_up"
    assert default_metric(plain, metrics, {}) == "accuracy"
    experiment = AdaptiveExperimentation(type="adaptive", candidate_variants=["a"], metric="task_success")
    adaptive = ChatFunctionConfig(type="chat", variants={}, experimentation=experiment)
    assert default_metric(adaptive, metrics, {"thumbs_up": 12}) == "task_success"
