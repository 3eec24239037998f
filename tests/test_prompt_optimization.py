"""The prompt search end to end, where the answer is known: the mock model answers right only
when its instructions mention pirates, the mock proposal model has that idea on one seed in
three, and an exact-match evaluator scores. Run as a real `ray job submit` against an
application on the session's cluster; the variant it writes scores, in a fresh evaluation,
what its report says. Plus the checks made before anything runs."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tensorzero_ray.config import load_config
from tensorzero_ray.evaluations.catalog import select
from tensorzero_ray.evaluations.runner import EvaluationRunner, EvaluationSpec
from tensorzero_ray.optimization.prompt_candidates import candidate_config, example_sets, with_examples
from tests.conftest import delete_app, deploy_app
from tests.mocks.openai_server import PIRATE_ANSWER

CONFIG = """
[clickhouse]
url = "chdb://{db}"

[models.pirate]
routing = ["openai"]
[models.pirate.providers.openai]
type = "openai"
model_name = "pirate"
api_base = "{openai}/v1/"
api_key_location = "path::{key}"

[models.proposer]
routing = ["openai"]
[models.proposer.providers.openai]
type = "openai"
model_name = "proposer"
api_base = "{openai}/v1/"
api_key_location = "path::{key}"

[models.analyst]
routing = ["openai"]
[models.analyst.providers.openai]
type = "openai"
model_name = "analyst"
api_base = "{openai}/v1/"
api_key_location = "path::{key}"

[models.mutator]
routing = ["openai"]
[models.mutator.providers.openai]
type = "openai"
model_name = "mutator"
api_base = "{openai}/v1/"
api_key_location = "path::{key}"

[functions.greet]
type = "chat"
[functions.greet.variants.plain]
type = "chat_completion"
model = "pirate"
system_template = "system.minijinja"
max_tokens = 50

[functions.greet.evaluators.exact]
type = "exact_match"
"""


@pytest.fixture(scope="module")
def search_app(serve_url, openai_mock, tmp_path_factory):
    home = tmp_path_factory.mktemp("prompt-search")
    (home / "key").write_text(openai_mock.api_key)
    (home / "system.minijinja").write_text("Answer the user.")
    config = home / "tensorzero.toml"
    config.write_text(CONFIG.format(db=home / "db" / "clickhouse", openai=openai_mock.url, key=home / "key"))
    deploy_app(str(config), "prompt", "/prompt", serve_url)
    url = f"{serve_url}/prompt"
    points = [
        {"type": "chat", "function_name": "greet", "output": [{"type": "text", "text": PIRATE_ANSWER}],
         "input": {"messages": [{"role": "user", "content": f"Hello there, number {n}"}]}}
        for n in range(12)
    ]  # fmt: skip
    created = httpx.post(f"{url}/v1/datasets/greetings/datapoints", json={"datapoints": points}, timeout=60)
    assert created.status_code == 200, created.text
    yield url, config, home
    delete_app("prompt")


def submit(*args: str) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", "http://127.0.0.1:8265", "--",
               "python", "jobs/prompt_optimization.py", *args]  # fmt: skip
    return subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "RAY_AUTH_MODE": "token"}
    )


def test_the_search_finds_the_instruction_that_works_and_its_variant_scores_as_reported(search_app):
    url, config, home = search_app
    output, written = home / "out", home / "prompt_search.toml"
    done = submit(
        "--gateway-url", url, "--config", str(config), "--function-name", "greet", "--variant-name", "plain",
        "--dataset-name", "greetings", "--proposal-model", "proposer", "--output", str(output),
        "--instructions", "3", "--example-sets", "2", "--examples-per-set", "2", "--trials", "6",
        "--minibatch", "4", "--workers", "2", "--concurrency", "4", "--top", "2", "--write-config", str(written),
    )  # fmt: skip
    log = done.stdout + done.stderr
    assert done.returncode == 0 and "succeeded" in done.stdout, log[-5000:]
    assert "`plain_optimized` scores 1.000 on `exact` against 0.000 for `plain`" in log, log[-3000:]
    assert "better than the baseline" in log
    assert re.search(r"trial \d+: failed: every inference or score failed", log), log[-3000:]
    template = (output / "templates" / "plain_optimized" / "system.minijinja").read_text()
    assert "pirate" in template
    assert "trial 5:" in log and (output / "trials.svg").read_text().startswith("<svg")
    report = (output / "report.md").read_text()
    assert "| plain | 0.000 |" in report and re.search(r"\| 5 \| \d \| \d \| (complete|pruned|fail) \|", report)

    # The written config is what was scored: a fresh evaluation of it on the same validation split.
    merged = load_config(f"{home}/*.toml")
    variant = merged.functions["greet"].variants["plain_optimized"]
    assert variant.system_template.contents == template and variant.max_tokens == 50
    _, evaluators = select(merged, function_name="greet")
    spec = EvaluationSpec(function_name="greet", evaluators=evaluators, variant_name="plain_optimized",
                          dataset_name="greetings", inference_cache="off",
                          dynamic_variant=variant.model_dump(mode="json", exclude_none=True))  # fmt: skip

    async def fresh() -> list[float]:
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            runner = EvaluationRunner(http, spec)
            points = await runner.datapoints()
            return [r["evaluations"]["exact"] async for r in runner.evaluate(points) if r["type"] == "success"]

    scores = asyncio.run(fresh())
    assert len(scores) == 12 and sum(scores) / len(scores) == 1.0

    # Every inference it made is stored, internal and tagged with its run.
    run_id = re.search(r"run `([^`]+)`", report).group(1)
    tagged = httpx.post(f"{url}/v1/inferences/list_inferences", timeout=60, json={
        "function_name": "greet", "limit": 500,
        "filters": {"type": "tag", "key": "prompt_optimization_run", "value": run_id, "comparison_operator": "="},
    })  # fmt: skip
    assert tagged.status_code == 200 and len(tagged.json()["inferences"]) >= 6 * 4

    # Stopped or not, the study lives in the output folder: a second run resumes it.
    again = submit(
        "--gateway-url", url, "--config", str(config), "--function-name", "greet", "--variant-name", "plain",
        "--dataset-name", "greetings", "--proposal-model", "proposer", "--output", str(output), "--trials", "7",
        "--minibatch", "4", "--workers", "2", "--concurrency", "4", "--top", "1",
    )  # fmt: skip
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert "resuming: 6 trial(s)" in again.stdout + again.stderr
    assert "trial 6:" in again.stdout + again.stderr and "trial 7:" not in again.stdout + again.stderr


def test_gepa_runs_as_a_ray_job_through_the_http_api(search_app):
    url, _, _ = search_app
    body = {"function_name": "greet", "dataset_name": "greetings", "evaluators": ["exact"],
            "analysis_model": "analyst", "mutation_model": "mutator", "max_iterations": 2, "batch_size": 3,
            "seed": 1, "variant_prefix": "pirate"}  # fmt: skip
    started = httpx.post(f"{url}/v1/optimization/gepa", json=body, timeout=60)
    assert started.status_code == 200, started.text
    task = f"{url}/v1/optimization/gepa/{started.json()['task_id']}"
    deadline = time.monotonic() + 240
    while (state := httpx.get(task, timeout=60).json())["status"] == "pending":
        assert time.monotonic() < deadline, f"GEPA still pending: {state}"
        time.sleep(0.5)  # the job runs elsewhere on the cluster; polling is how its API is read
    assert state["status"] == "completed", state
    [(name, variant)] = state["variants"].items()
    assert name == "pirate_0" and "pirate" in variant["system_template"]["contents"]
    assert variant["model"] == "pirate" and variant["max_tokens"] == 50
    assert state["statistics"][name]["exact"] == {"mean": 1.0, "stdev": 0.0, "count": 6}
    assert state["statistics"]["plain"]["exact"]["mean"] == 0.0


@pytest.mark.parametrize(
    "body, status, problem",
    [
        ({"function_name": "nope"}, 404, "nope"),
        ({"evaluators": ["nope"]}, 400, "Unknown evaluator `nope`"),
        ({"analysis_model": "nope"}, 404, "nope"),
        ({"initial_variants": ["nope"]}, 400, "Unknown variant `nope`"),
        ({"evaluation_name": "e"}, 400, "not both"),
        ({"train_dataset_name": "a"}, 400, "both `train_dataset_name` and `val_dataset_name`"),
        ({"max_iterations": 0}, 400, "max_iterations"),
    ],
)
def test_gepa_requests_are_checked_before_a_job_starts(search_app, body, status, problem):
    url, _, _ = search_app
    base = {"function_name": "greet", "dataset_name": "greetings", "evaluators": ["exact"],
            "analysis_model": "analyst", "mutation_model": "mutator", "max_iterations": 1}  # fmt: skip
    answer = httpx.post(f"{url}/v1/optimization/gepa", json={**base, **body}, timeout=60)
    assert answer.status_code == status and problem in answer.json()["error"], answer.text


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"--function-name": "nope"}, "Unknown function `nope`"),
        ({"--variant-name": "nope"}, "Unknown variant `nope` of function `greet`"),
        ({"--evaluator": "nope"}, "Unknown evaluator `nope` for function `greet`"),
        ({"--proposal-model": "nope"}, "Unknown proposal model `nope`"),
        ({"--dataset-name": "empty"}, "Unknown dataset: empty"),
        ({"--minibatch": "20"}, "fewer than --minibatch 20"),
    ],
)
def test_mistakes_are_named_before_anything_runs(search_app, tmp_path, capsys, change, problem):
    from tensorzero_ray.optimization.prompt_search import main

    url, config, _ = search_app
    args = {"--gateway-url": url, "--config": str(config), "--function-name": "greet", "--variant-name": "plain",
            "--dataset-name": "greetings", "--proposal-model": "proposer", "--output": str(tmp_path / "out"),
            **change}  # fmt: skip
    status = main([item for pair in args.items() for item in pair])
    assert status == 2 and problem in capsys.readouterr().err


def test_candidates_keep_examples_out_of_the_template_language():
    points = [{"id": str(n), "input": {"messages": [{"role": "user", "content": "{{ x }}"}]},
               "output": [{"type": "text", "text": f"answer {n}"}]} for n in range(5)]  # fmt: skip
    sets = example_sets(points, 3, 2, seed=1)
    assert sets[0] == [] and len(sets) == 3 and all(len(s) == 2 for s in sets[1:])
    text = with_examples("Be brief.", sets[1])
    assert text.startswith("Be brief.\n\nExamples") and "{% raw %}" in text and "user: {{ x }}" in text
    config = load_config(str(Path(__file__).parent / "config" / "tensorzero.toml"))
    baseline = config.functions["basic_test"].variants["test"]
    dynamic = candidate_config(baseline, text)
    assert dynamic["system_template"] == {"path": "prompt_search/system", "contents": text}
    assert dynamic["model"] == "good" and "weight" not in dynamic
