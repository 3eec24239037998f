"""`jobs/experiment_report.py`: the experiment report from a running gateway (it owns the
stored data), printed as a table or as JSON. Exit status 2 for bad names, 1 when the sample
ratio does not match the intended probabilities, 0 otherwise."""

from __future__ import annotations

import argparse
import json
import sys

import httpx

from tensorzero_ray.types.experiments import ExperimentReport


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="experiment_report", description=__doc__)
    p.add_argument("--gateway-url", default="http://127.0.0.1:8000")
    p.add_argument("--function", required=True, help="the function whose variants are compared")
    p.add_argument("--metric", required=True)
    p.add_argument("--covariate-metric", help="a pre-period metric on the same targets, for CUPED")
    p.add_argument("--baseline", help="the variant the others are compared with (default: the first candidate)")
    p.add_argument("--namespace")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--tune-n", type=int, default=100, help="units at which the confidence sequences are tightest")
    p.add_argument("--format", choices=("pretty", "json"), default="pretty")
    return p


def render(report: ExperimentReport) -> str:
    def span(interval) -> str:
        return f"[{interval.low:.4f}, {interval.high:.4f}]" if interval else "needs 2+ units"

    lines = [
        f"{report.function_name}: {report.metric_name} ({report.level}-level, {report.optimize}), "
        f"{1 - report.alpha:.0%} intervals",
        f"{'variant':<16} {'units':>7} {'mean':>8}  {'fixed-n interval':<20} {'anytime-valid':<20}"
        + ("  CUPED-adjusted mean" if report.cuped else ""),
    ]
    for v in report.variants:
        line = f"{v.variant_name:<16} {v.units:>7} {v.mean:>8.4f}  {span(v.interval):<20} {span(v.sequence):<20}"
        if report.cuped and v.adjusted_mean is not None:
            line += f"  {v.adjusted_mean:.4f} {span(v.adjusted_sequence)}"
        lines.append(line)
    for c in report.comparisons:
        lines.append(
            f"{c.variant_name} - {c.baseline}: {c.difference:+.4f} {span(c.sequence)} anytime-valid: {c.verdict}"
        )
    if report.cuped:
        lines.append(
            f"CUPED on {report.cuped.covariate_metric}: theta {report.cuped.theta:.4f}, variance "
            f"{report.cuped.variance_reduction:.1%} lower ({report.cuped.units_with_covariate} units with the covariate)"
        )
    ratio = report.sample_ratio
    if ratio is not None:
        verdict = "MISMATCH: check sampling and logging" if ratio.mismatch else "ok"
        p_value = f"{ratio.p_value:.4g}" if ratio.p_value is not None else "n/a"
        lines.append(f"sample ratio: observed {ratio.observed}, expected {ratio.expected}, p = {p_value}: {verdict}")
        if ratio.outside:
            lines.append(f"  episodes outside the experiment (fallbacks): {ratio.outside}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    params = {
        "metric_name": args.metric, "covariate_metric": args.covariate_metric, "baseline": args.baseline,
        "namespace": args.namespace, "alpha": args.alpha, "tune_n": args.tune_n,
    }  # fmt: skip
    with httpx.Client(base_url=args.gateway_url, timeout=120) as http:
        try:
            answer = http.get(
                f"/internal/experiments/{args.function}/report",
                params={k: v for k, v in params.items() if v is not None},
            )
        except httpx.HTTPError as exc:
            print(f"error: could not reach the gateway at {args.gateway_url}: {exc}", file=sys.stderr)
            return 2
    if answer.status_code != 200:
        print(f"error: {answer.json().get('error', answer.text)}", file=sys.stderr)
        return 2
    report = ExperimentReport.model_validate(answer.json())
    print(json.dumps(report.model_dump(mode="json"), indent=2) if args.format == "json" else render(report), end="")
    return 1 if report.sample_ratio is not None and report.sample_ratio.mismatch else 0
