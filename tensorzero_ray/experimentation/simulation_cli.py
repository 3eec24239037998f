"""`jobs/bandit_simulation.py`: many simulated experiments in parallel Ray tasks, one row per
`delta`: how often track-and-stop picks a wrong arm (it should stay under delta), how much
traffic it needs to stop, and its regret next to a fixed-horizon A/B test on the same traffic.
With `--out DIR`, writes report.html (SVG charts) and results.json there."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path

from tensorzero_ray.experimentation.simulation import (
    PolicySettings,
    Scenario,
    Summary,
    ab_samples_per_arm,
    run_replicates,
    summarize,
    with_delta,
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bandit_simulation", description=__doc__)
    p.add_argument("--arms", required=True, help="bernoulli:0.5,0.6 or gaussian:0/1,0.2/1 (mean/std)")
    p.add_argument("--deltas", default="0.05", help="comma-separated error budgets to compare")
    p.add_argument("--epsilon", type=float, default=0.0)
    p.add_argument("--min-samples-per-variant", type=int, default=10)
    p.add_argument("--min-prob", type=float, default=0.0)
    p.add_argument("--batch", type=int, default=50, help="pulls between two state updates")
    p.add_argument("--horizon", type=int, default=20_000, help="pulls per simulated experiment")
    p.add_argument("--replicates", type=int, default=1000, help="simulated experiments per delta")
    p.add_argument("--workers", type=int, default=2, help="parallel Ray tasks at a time")
    p.add_argument("--cpus-per-worker", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="folder for report.html and results.json")
    return p


def settings_from(args) -> tuple[Scenario, PolicySettings, list[float]]:
    scenario = Scenario.parse(args.arms)
    deltas = [float(d) for d in args.deltas.split(",") if d.strip()]
    if not deltas or not all(0 < d < 1 for d in deltas):
        raise ValueError("--deltas must be numbers in (0, 1)")
    if args.min_prob * len(scenario.means) > 1:
        raise ValueError(f"--min-prob {args.min_prob} x {len(scenario.means)} arms is above 1")
    if args.replicates < 1 or args.batch < 1 or args.horizon < args.batch or args.workers < 1:
        raise ValueError("--replicates, --batch and --workers must be at least 1, and --horizon at least --batch")
    settings = PolicySettings(
        epsilon=args.epsilon,
        min_samples_per_variant=args.min_samples_per_variant,
        min_prob=args.min_prob,
        batch=args.batch,
        horizon=args.horizon,
    )
    return scenario, settings, deltas


def simulate_on_ray(args, scenario: Scenario, settings: PolicySettings, deltas: list[float]) -> list[Summary]:
    import ray

    remote = ray.remote(num_cpus=args.cpus_per_worker, max_retries=0)(run_replicates)
    chunk = max(1, math.ceil(args.replicates / (args.workers * 4)))
    tasks = []
    for delta in deltas:
        policy = with_delta(settings, delta)
        ab = ab_samples_per_arm(scenario, policy)
        for start in range(0, args.replicates, chunk):
            seeds = [args.seed + start + i for i in range(min(chunk, args.replicates - start))]
            tasks.append((delta, ab, policy, seeds))
    outcomes: dict[float, list] = {delta: [] for delta in deltas}
    pending: dict = {}
    done = 0
    while tasks or pending:
        while tasks and len(pending) < args.workers:
            delta, ab, policy, seeds = tasks.pop(0)
            pending[remote.remote(scenario, policy, seeds, ab)] = (delta, len(seeds))
        ready, _ = ray.wait(list(pending), num_returns=1)
        delta, count = pending.pop(ready[0])
        outcomes[delta] += ray.get(ready[0])
        done += count
        print(f"simulated {done}/{args.replicates * len(deltas)}", file=sys.stderr, flush=True)
    return [summarize(d, outcomes[d], ab_samples_per_arm(scenario, with_delta(settings, d))) for d in deltas]


def table(summaries: list[Summary]) -> str:
    lines = [
        f"{'delta':>6}  {'error rate [95%]':<22} {'stopped':>7} {'samples to stop (mean/p50/p90)':>31}"
        f" {'regret T&S':>11} {'regret A/B':>11} {'A/B error':>9}"
    ]
    for s in summaries:
        interval = f"{s.error_rate:.4f} [{s.error_low:.3f}, {s.error_high:.3f}]"
        samples = f"{s.mean_samples:.0f}/{s.p50_samples:.0f}/{s.p90_samples:.0f}"
        lines.append(
            f"{s.delta:>6g}  {interval:<22} {s.stopped_share:>7.1%} {samples:>31}"
            f" {s.mean_regret:>11.1f} {s.ab_mean_regret:>11.1f} {s.ab_error_rate:>9.4f}"
        )
    return "\n".join(lines) + "\n"


def report_html(scenario: Scenario, summaries: list[Summary]) -> str:
    from tensorzero_ray.ui.charts import Series, line_chart

    deltas = [s.delta for s in summaries]
    error = line_chart(
        [
            Series("error rate", [(s.delta, s.error_rate) for s in summaries],
                   [(s.delta, s.error_low, s.error_high) for s in summaries]),
            Series("delta (the budget)", [(d, d) for d in deltas]),
        ],
        title="Wrong winners against delta", y_label="share of runs", time_axis=False,
    )  # fmt: skip
    samples = line_chart(
        [
            Series("mean", [(s.delta, s.mean_samples) for s in summaries]),
            Series("p90", [(s.delta, s.p90_samples) for s in summaries]),
        ],
        title="Traffic needed to stop", y_label="pulls", time_axis=False,
    )  # fmt: skip
    regret = line_chart(
        [
            Series("track-and-stop", [(s.delta, s.mean_regret) for s in summaries]),
            Series("fixed-horizon A/B", [(s.delta, s.ab_mean_regret) for s in summaries]),
        ],
        title="Regret over the horizon", y_label="expected reward lost", time_axis=False,
    )  # fmt: skip
    style = (
        "body{font:14px system-ui,sans-serif;margin:2rem;max-width:780px}figure{margin:1.5rem 0}"
        ".chart-svg{width:100%;height:auto}.grid{stroke:#e5e7eb}.axis-label,.tick{font-size:12px;fill:#374151}"
        "pre{background:#f3f4f6;padding:1rem;overflow:auto}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Bandit simulation</title><style>{style}</style>"
        f"</head><body><h1>Track-and-stop on {scenario.kind} arms {list(scenario.means)}</h1>"
        f"<pre>{table(summaries)}</pre>{error}{samples}{regret}</body></html>"
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        scenario, settings, deltas = settings_from(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from tensorzero_ray.cluster import cpu_shortfall

    short = cpu_shortfall(args.workers, args.cpus_per_worker, "--workers or --cpus-per-worker")
    if short is not None:
        print(f"error: not enough CPUs for the simulation: {short}", file=sys.stderr)
        return 2
    summaries = simulate_on_ray(args, scenario, settings, deltas)
    print(f"{scenario.kind} arms {list(scenario.means)}; best arm{scenario.best}; {args.replicates} runs per delta; "
          f"A/B test: {summaries[0].ab_samples_per_arm} pulls per arm at the first delta")  # fmt: skip
    print(table(summaries), end="")
    if args.out:
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.html").write_text(report_html(scenario, summaries))
        (folder / "results.json").write_text(json.dumps([asdict(s) for s in summaries], indent=2))
        print(f"report: {folder / 'report.html'}")
    return 0
