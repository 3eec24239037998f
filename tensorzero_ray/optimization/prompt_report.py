"""The prompt search's report: the winner against the baseline on the validation split
(paired on the same datapoints), the best candidates, every trial, and a plot of the trials
(`trials.svg`, the UI's own chart drawing with its styles inlined)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from tensorzero_ray.ui.charts import Series, line_chart

SVG_STYLE = (
    "<style>.grid{stroke:#e5e7eb}.axis{stroke:#6b7280}.tick,.legend,.axis-label{font:11px sans-serif;"
    "fill:#374151}</style>"
)


def _interval(low: float, high: float) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "(interval needs 2+ datapoints)"
    return f"[{low:+.3f}, {high:+.3f}]"


def trials_svg(study) -> str:
    from optuna.trial import TrialState

    finished = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    points = [(float(t.number), float(t.value)) for t in finished]
    best, running = [], float("-inf")
    for number, value in points:
        running = max(running, value)
        best.append((number, running))
    chart = str(
        line_chart(
            [Series("trial score (minibatch)", points), Series("best so far", best)],
            title="Prompt search trials",
            y_label="score",
            time_axis=False,
        )  # fmt: skip
    )
    svg = re.search(r"<svg.*</svg>", chart, re.S)
    body = svg.group(0) if svg else '<svg viewBox="0 0 720 60"><text x="10" y="30">No trial completed.</text></svg>'
    return body.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1).replace(">", ">" + SVG_STYLE, 1)


def write_report(output: Path, plan: Any, study, baseline, candidates: list, winner, variant_name: str) -> str:
    from optuna.trial import TrialState

    (output / "trials.svg").write_text(trials_svg(study))
    metric = plan.objective.name
    lines = []
    base_mean = baseline.summary.mean if baseline.summary else float("nan")
    win_mean = winner.summary.mean if winner.summary else float("nan")
    difference = winner.versus_baseline
    verdict = (
        "better than the baseline"
        if difference is not None and difference.low > 0
        else "not distinguishable from the baseline"
        if difference is None or difference.high >= 0
        else "worse than the baseline"
    )
    lines.append(
        f"`{variant_name}` scores {win_mean:.3f} on `{metric}` against {base_mean:.3f} for `{plan.baseline_name}` "
        f"on {len(plan.validation)} validation datapoints: {verdict}"
    )
    lines.append("")
    lines.append(f"Function `{plan.function_name}`, run `{plan.run_id}` (inferences tagged `prompt_optimization_run`).")
    lines.append("")
    lines.append("## On the validation split")
    lines.append("")
    lines.append("| variant | mean | 95% interval | minus baseline, paired | 95% interval |")
    lines.append("|---|---|---|---|---|")
    for entry in [baseline, *candidates]:
        summary = entry.summary
        shown = f"{summary.mean:.3f} | {_interval(summary.low, summary.high)}" if summary else "- | -"
        pair = entry.versus_baseline
        paired = f"{pair.mean:+.3f} | {_interval(pair.low, pair.high)}" if pair else "- | -"
        label = entry.name if entry.params is None else f"{entry.name} ({_params(entry.params)})"
        lines.append(f"| {label} | {shown} | {paired} |")
    lines.append("")
    lines.append("![trials](trials.svg)")
    lines.append("")
    lines.append("## Trials (minibatches of the training split)")
    lines.append("")
    lines.append("| trial | instruction | example set | state | score |")
    lines.append("|---|---|---|---|---|")
    for trial in study.get_trials(deepcopy=False):
        value = f"{trial.value:.3f}" if trial.state == TrialState.COMPLETE else "-"
        lines.append(
            f"| {trial.number} | {trial.params.get('instruction', '-')} | {trial.params.get('examples', '-')} "
            f"| {trial.state.name.lower()} | {value} |"
        )
    lines.append("")
    lines.append("## Instructions")
    for index, instruction in enumerate(plan.instructions):
        lines.append("")
        lines.append(f"{index}{' (current)' if index == 0 else ''}:")
        lines.append("")
        lines.extend(f"> {line}" for line in instruction.splitlines() or [""])
    report = "\n".join(lines) + "\n"
    (output / "report.md").write_text(report)
    return report


def _params(params: dict[str, int]) -> str:
    return f"instruction {params['instruction']}, example set {params['examples']}"
