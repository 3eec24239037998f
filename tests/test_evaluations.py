"""Evaluations against an in-process gateway over the session's store: evaluators from both
config forms, known exact-match and regex rates with the right intervals, an LLM judge that is
a served function, scores stored as feedback under TensorZero's names, cutoffs and adaptive
stopping, and clear failures before any inference for bad names."""

from __future__ import annotations

import argparse
import io
import json
import textwrap

import httpx
import pytest

from tensorzero_ray.api.gateway import create_app
from tensorzero_ray.client import AsyncTensorZeroRayClient
from tensorzero_ray.config import ConfigError, load_config
from tensorzero_ray.config.functions import LlmJudgeEvaluator
from tensorzero_ray.evaluations import calibration_cli, cli
from tensorzero_ray.evaluations.calibration import boolean_agreement, float_agreement, kappa_reading
from tensorzero_ray.evaluations.catalog import judge_input
from tensorzero_ray.evaluations.runner import EvaluationRunner
from tensorzero_ray.functions.routers import LocalRouters
from tensorzero_ray.providers.dummy import ALTERNATE, MEGUMIN
from tensorzero_ray.statistics import wilson
from tensorzero_ray.ui.app import create_ui_app

CONFIG = """
[functions.story]
type = "chat"
[functions.story.variants.good]
type = "chat_completion"
model = "dummy::good"
[functions.story.variants.alternate]
type = "chat_completion"
model = "dummy::alternate"

[functions.story.evaluators.matches]
type = "exact_match"

[functions.story.evaluators.explodes]
type = "regex"
must_match = "thunderous"
must_not_match = "gentle rain"

[functions.story.evaluators.no_tools]
type = "tool_use"
behavior = "none"

[functions.story.evaluators.judge]
type = "llm_judge"
output_type = "boolean"
optimize = "max"
[functions.story.evaluators.judge.variants.yes]
type = "chat_completion"
model = "dummy::llm_judge::true"
system_instructions = "judge.txt"
json_mode = "strict"

[evaluations.legacy]
type = "static"
function_name = "story"
[evaluations.legacy.evaluators.matches]
type = "exact_match"

[evaluations.replayed]
type = "inference"
function_name = "story"
[evaluations.replayed.evaluators.judge]
type = "llm_judge"
output_type = "boolean"
optimize = "max"
input_format = "messages"
include = { reference_output = true }
[evaluations.replayed.evaluators.judge.variants.mock]
type = "chat_completion"
model = "mock_judge"
system_instructions = "judge.txt"
json_mode = "strict"

[models.mock_judge]
routing = ["openai"]
[models.mock_judge.providers.openai]
type = "openai"
model_name = "judge-replay"
api_base = "{openai}/v1/"
api_key_location = "path::{key}"
"""
DATASET = "stories"
# Three references equal to what `good` answers, one that is not: exact match 3/4 for `good`.
REFERENCES = [MEGUMIN, MEGUMIN, MEGUMIN, "Something else entirely."]


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, openai_mock):
    folder = tmp_path_factory.mktemp("evaluations")
    (folder / "openai_key").write_text(openai_mock.api_key)
    (folder / "tensorzero.toml").write_text(
        textwrap.dedent(CONFIG).replace("{openai}", openai_mock.url).replace("{key}", str(folder / "openai_key"))
    )
    (folder / "judge.txt").write_text("Answer true if the story is good.")
    return folder / "tensorzero.toml"


@pytest.fixture(scope="module")
async def client(config_file, observability):
    config = load_config(str(config_file))
    routers = LocalRouters(config, observability)
    transport = httpx.ASGITransport(app=create_app(config, routers, observability))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=60) as http:
        points = [
            {
                "type": "chat",
                "function_name": "story",
                "input": {"messages": [{"role": "user", "content": f"Tell story #{n}"}]},
                "output": [{"type": "text", "text": reference}],
            }
            for n, reference in enumerate(REFERENCES)
        ]
        created = await http.post(f"/v1/datasets/{DATASET}/datapoints", json={"datapoints": points})
        assert created.status_code == 200, created.text
        yield http
    await routers.aclose()


def args(config_file, *extra: str) -> argparse.Namespace:
    return cli.parser().parse_args(["--config-file", str(config_file), "--format", "jsonl", *extra])


async def evaluate(client, config_file, *extra: str) -> tuple[int, list[dict]]:
    out = io.StringIO()
    status = await cli.run(args(config_file, *extra), client, out)
    return status, [json.loads(line) for line in out.getvalue().splitlines()]


async def test_known_rates_come_out_with_wilson_intervals_and_are_stored_as_feedback(
    client, config_file, observability
):
    status, records = await evaluate(
        client, config_file, "--function-name", "story", "--variant-name", "good", "--dataset-name", DATASET,
        "--concurrency", "4",
    )  # fmt: skip
    assert status == 0
    header, rows = records[0], records[1:]
    assert header["num_datapoints"] == 4 and set(header) == {"evaluation_run_id", "num_datapoints"}
    assert all(r["type"] == "success" for r in rows) and len(rows) == 4
    assert set(rows[0]) == {"type", "datapoint", "response", "evaluations", "evaluator_errors"}
    matches = [r["evaluations"]["matches"] for r in rows]
    assert sorted(matches) == [False, True, True, True]
    assert all(r["evaluations"]["explodes"] is True for r in rows)  # only MEGUMIN is thunderous
    assert all(r["evaluations"]["judge"] is True and r["evaluations"]["no_tools"] is True for r in rows)

    run_id = header["evaluation_run_id"]
    await observability.flush()
    stored = await observability.query(
        "SELECT metric_name, toUInt8(value) AS v, tags FROM BooleanMetricFeedback "
        "WHERE tags['tensorzero::evaluation_run_id'] = {r:String}",
        {"r": run_id},
    )
    exact = [row for row in stored if row["metric_name"] == "tensorzero::function_name::story::evaluator_name::matches"]
    assert sorted(row["v"] for row in exact) == [0, 1, 1, 1]
    judged = [row for row in stored if row["tags"]["tensorzero::evaluator_name"] == "judge"]
    assert len(judged) == 4 and all("tensorzero::evaluator_inference_id" in row["tags"] for row in judged)

    out = io.StringIO()
    pretty = args(config_file, "--function-name", "story", "--variant-name", "good", "--dataset-name", DATASET)
    pretty.format = "pretty"
    assert await cli.run(pretty, client, out) == 0
    interval = wilson(4, 3)
    assert f"matches: 0.7500 ± 0.2500 (n=4) 95% [{interval.low:.4f}, {interval.high:.4f}]" in out.getvalue()


async def test_cutoffs_set_the_exit_status(client, config_file):
    base = ["--function-name", "story", "--dataset-name", DATASET, "--evaluator-names", "matches,explodes"]
    passed, _ = await evaluate(client, config_file, *base, "--variant-name", "good", "--cutoffs", "matches=0.7")
    assert passed == 0
    failed, records = await evaluate(
        client, config_file, *base, "--variant-name", "alternate", "--cutoffs", "explodes=0.5"
    )
    assert failed == 1
    assert all(r["evaluations"]["explodes"] is False and r["response"]["content"][0]["text"] == ALTERNATE
               for r in records[1:])  # fmt: skip


async def test_adaptive_stopping_ends_the_run_early(client, config_file):
    status, records = await evaluate(
        client, config_file, "--function-name", "story", "--variant-name", "good", "--dataset-name", DATASET,
        "--evaluator-names", "explodes", "--adaptive-stopping-precision", "explodes=0.6",
    )  # fmt: skip
    # Wilson's half-width (the larger side) for 2 of 2 is 0.66, for 3 of 3 it is 0.56: three are enough.
    assert status == 0 and len(records) - 1 == 3


async def test_the_older_evaluations_table_names_its_metrics_after_the_evaluation(client, config_file, observability):
    status, records = await evaluate(
        client, config_file, "--evaluation-name", "legacy", "--variant-name", "good", "--dataset-name", DATASET
    )
    assert status == 0 and sorted(r["evaluations"]["matches"] for r in records[1:]) == [False, True, True, True]
    await observability.flush()
    stored = await observability.query(
        "SELECT count() AS n FROM BooleanMetricFeedback WHERE metric_name = {m:String} "
        "AND tags['tensorzero::evaluation_run_id'] = {r:String}",
        {"m": "tensorzero::evaluation_name::legacy::evaluator_name::matches", "r": records[0]["evaluation_run_id"]},
    )
    assert stored[0]["n"] == 4


async def test_a_messages_judge_reads_the_conversation_then_the_output(client, config_file, openai_mock):
    status, records = await evaluate(
        client, config_file, "--evaluation-name", "replayed", "--variant-name", "alternate", "--dataset-name", DATASET
    )
    assert status == 0 and [r["evaluations"]["judge"] for r in records[1:]] == [True] * 4
    sent = [r["body"]["messages"] for r in openai_mock.requests if r["body"].get("model") == "judge-replay"][-4:]
    conversations = sorted(sent, key=str)
    system, asked, verdict = conversations[3]
    assert system == {"role": "system", "content": "Answer true if the story is good."}
    assert asked == {"role": "user", "content": [{"type": "text", "text": "Tell story #3"}]}
    assert verdict["role"] == "user"
    assert verdict["content"][0]["text"] == (
        f"# Generated Output\n\n{json.dumps([{'type': 'text', 'text': ALTERNATE}], indent=2)}"
        '\n\n# Reference Output\n\n[\n  {\n    "type": "text",\n    "text": "Something else entirely."\n  }\n]'
    )


def test_a_messages_judge_sees_images_as_images_and_the_rest_as_text():
    judge = LlmJudgeEvaluator(type="llm_judge", output_type="boolean", optimize="max", input_format="messages")
    image = {"type": "file", "url": "https://example.com/cat.png", "mime_type": "image/png"}
    conversation = {
        "system": {"tone": "dry"},
        "messages": [
            {"role": "user", "content": [{"type": "template", "name": "user", "arguments": {"topic": "cats"}}, image]},
            {"role": "assistant", "content": [{"type": "thought", "text": "hm"}, {"type": "raw_text", "value": "ok"}]},
        ],
    }
    seen = judge_input(judge, conversation, {"answer": 1}, reference={"answer": 2})
    system, asked, answered, verdict = seen["messages"]
    assert system["content"][0]["text"].startswith("# System\n\n{")
    assert asked["content"][1] == image and '"topic": "cats"' in asked["content"][0]["text"]
    assert answered == {"role": "assistant", "content": [{"type": "text", "text": "ok"}]}
    # The reference stays out unless the evaluator includes it.
    assert verdict["content"] == [{"type": "text", "text": '# Generated Output\n\n{\n  "answer": 1\n}'}]


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--function-name", "nope", "--variant-name", "good", "--dataset-name", DATASET], "Unknown function `nope`"),
        (["--function-name", "story", "--evaluator-names", "nope", "--variant-name", "good", "--dataset-name", DATASET],
         "Unknown evaluator `nope`"),
        (["--function-name", "story", "--variant-name", "nope", "--dataset-name", DATASET], "Unknown variant `nope`"),
        (["--function-name", "story", "--variant-name", "good", "--dataset-name", "empty"], "Unknown dataset: empty"),
        (["--function-name", "story", "--variant-name", "good", "--datapoint-ids", "0196ff53-8b0c-7e72-a23a-2a1cd1a7a8e6"],
         "Unknown datapoint"),
        (["--evaluation-name", "nope", "--variant-name", "good", "--dataset-name", DATASET], "Unknown evaluation `nope`"),
        (["--function-name", "story", "--variant-name", "good", "--dataset-name", DATASET, "--cutoffs", "zzz=1"],
         "unknown evaluator `zzz`"),
    ],
    ids=["function", "evaluator", "variant", "dataset", "datapoint", "evaluation", "cutoff"],
)  # fmt: skip
async def test_bad_names_stop_the_run_before_any_inference(client, config_file, observability, capsys, extra, fragment):
    before = await observability.query("SELECT count() AS n FROM ChatInference WHERE function_name = 'story'")
    status, records = await evaluate(client, config_file, *extra)
    assert status == 2 and records == []
    assert fragment in capsys.readouterr().err
    await observability.flush()
    assert await observability.query("SELECT count() AS n FROM ChatInference WHERE function_name = 'story'") == before


def test_a_typescript_evaluator_is_refused_at_start_up(tmp_path):
    (tmp_path / "check.ts").write_text("export default () => true;")
    (tmp_path / "tensorzero.toml").write_text(
        textwrap.dedent(CONFIG)
        + '\n[functions.story.evaluators.ts]\ntype = "typescript"\ntypescript_file = "check.ts"\n'
        'output_type = "boolean"\noptimize = "max"\n'
    )
    (tmp_path / "judge.txt").write_text("x")
    with pytest.raises(ConfigError, match="`typescript` evaluators are not supported"):
        load_config(str(tmp_path / "tensorzero.toml"))


@pytest.mark.parametrize(
    "evaluator, fragment",
    [
        ('type = "regex"', "needs `must_match`, `must_not_match` or both"),
        ('type = "regex"\nmust_match = "("', "not a valid regular expression"),
        ('type = "llm_judge"\noutput_type = "float"\noptimize = "max"', "needs at least one variant"),
    ],
    ids=["regex-empty", "regex-invalid", "judge-without-variants"],
)
def test_bad_evaluators_are_named_at_start_up(tmp_path, evaluator, fragment):
    (tmp_path / "judge.txt").write_text("x")
    (tmp_path / "tensorzero.toml").write_text(
        textwrap.dedent(CONFIG) + f"\n[functions.story.evaluators.bad]\n{evaluator}\n"
    )
    with pytest.raises(ConfigError) as refused:
        load_config(str(tmp_path / "tensorzero.toml"))
    assert "functions.story.evaluators.bad" in str(refused.value) and fragment in str(refused.value)


async def test_workflow_evaluation_runs_pin_and_tag_their_episodes(client, config_file, observability):
    run = await client.post(
        "/workflow_evaluation_run",
        json={"variants": {"story": "alternate"}, "tags": {"experiment": "rain"}, "project_name": "stories"},
    )
    assert run.status_code == 200, run.text
    run_id = run.json()["run_id"]
    episode = await client.post(
        f"/workflow_evaluation_run/{run_id}/episode", json={"task_name": "t1", "tags": {"k": "v"}}
    )
    episode_id = episode.json()["episode_id"]
    body = {
        "function_name": "story",
        "episode_id": episode_id,
        "input": {"messages": [{"role": "user", "content": "Hi"}]},
    }
    answer = await client.post("/inference", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["variant_name"] == "alternate" and answer.json()["content"][0]["text"] == ALTERNATE
    pinned_elsewhere = await client.post("/inference", json={**body, "variant_name": "good"})
    assert pinned_elsewhere.json()["variant_name"] == "good"  # an explicit variant still wins

    await observability.flush()
    stored = await observability.query(
        "SELECT tags FROM ChatInference WHERE id = {i:UUID}", {"i": answer.json()["inference_id"]}
    )
    assert stored[0]["tags"] == {
        "experiment": "rain",
        "k": "v",
        "tensorzero::workflow_evaluation_run_id": run_id,
        "tensorzero::dynamic_evaluation_run_id": run_id,
        "tensorzero::variant_pinned": "alternate",
    }
    # Another replica (nothing in its memory) finds the episode in the database.
    config = load_config(str(config_file))
    other = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(config, LocalRouters(config, observability), observability)),
        base_url="http://localhost",
    )
    async with other:
        elsewhere = await other.post("/inference", json=body)
        assert elsewhere.json()["variant_name"] == "alternate"
        legacy = await other.post(f"/dynamic_evaluation_run/{run_id}/episode", json={})
        assert legacy.status_code == 200 and legacy.json()["episode_id"] != episode_id


async def test_workflow_evaluation_mistakes_are_named(client):
    unknown_function = await client.post("/workflow_evaluation_run", json={"variants": {"nope": "x"}})
    assert unknown_function.status_code == 404 and "Unknown function: nope" in unknown_function.text
    unknown_variant = await client.post("/workflow_evaluation_run", json={"variants": {"story": "x"}})
    assert unknown_variant.status_code == 404 and "Unknown variant: x" in unknown_variant.text
    unknown_run = await client.post("/workflow_evaluation_run/0196ff53-8b0c-7e72-a23a-2a1cd1a7a8e6/episode", json={})
    assert unknown_run.status_code == 404 and "Workflow evaluation run not found" in unknown_run.text
    from tensorzero_ray.ids import workflow_episode_id

    body = {
        "function_name": "story",
        "episode_id": str(workflow_episode_id()),
        "input": {"messages": [{"role": "user", "content": "Hi"}]},
    }
    made_up = await client.post("/inference", json=body)
    assert made_up.status_code == 400 and "no workflow evaluation run created it" in made_up.text


async def test_the_gateway_runs_an_evaluation_as_a_stream_and_records_the_run(client, observability):
    transport = client._transport
    async with AsyncTensorZeroRayClient("http://localhost", transport=transport) as ours:
        events = [
            event
            async for event in ours.experimental_run_evaluation(
                function_name="story", evaluator_names=["matches"], dataset_name=DATASET, variant_name="good",
                concurrency=2,
            )
        ]  # fmt: skip
    assert [e["type"] for e in events] == ["start", "success", "success", "success", "success", "complete"]
    start = events[0]
    assert start["num_datapoints"] == 4 and start["variant_name"] == "good" and start["dataset_name"] == DATASET
    assert sorted(e["evaluations"]["matches"] for e in events[1:-1]) == [False, True, True, True]
    await observability.flush()
    rows = await observability.query(
        "SELECT function_name, function_type, dataset_name, variant_names, source, metrics, status "
        "FROM InferenceEvaluationRuns FINAL WHERE run_id_uint = toUInt128({r:UUID})",
        {"r": start["evaluation_run_id"]},
    )
    assert len(rows) == 1 and rows[0]["variant_names"] == ["good"] and rows[0]["source"] == "ui"
    assert rows[0]["status"] == "complete"
    assert json.loads(rows[0]["metrics"])[0]["name"] == "tensorzero::function_name::story::evaluator_name::matches"
    bad = await client.post(
        "/internal/evaluations/run", json={"function_name": "story", "variant_name": "nope", "dataset_name": DATASET}
    )
    assert bad.status_code == 400 and "Unknown variant `nope`" in bad.text


async def test_a_human_score_of_the_same_output_is_reused_instead_of_the_judge(client, config_file, observability):
    base = [
        "--function-name",
        "story",
        "--evaluator-names",
        "judge",
        "--variant-name",
        "good",
        "--dataset-name",
        DATASET,
    ]
    _, first = await evaluate(client, config_file, *base)
    scored = first[1]
    assert scored["evaluations"]["judge"] is True  # the dummy judge always says yes
    human = await client.post(
        "/feedback",
        json={
            "metric_name": "tensorzero::function_name::story::evaluator_name::judge",
            "inference_id": scored["response"]["inference_id"],
            "value": False,
            "internal": True,
            "tags": {"tensorzero::datapoint_id": scored["datapoint"]["id"], "tensorzero::human_feedback": "true"},
        },
    )
    assert human.status_code == 200, human.text
    await observability.flush()
    _, second = await evaluate(client, config_file, *base)
    verdicts = {r["datapoint"]["id"]: r["evaluations"]["judge"] for r in second[1:]}
    # The person's "no" covers that datapoint's identical output; the judge still answers the rest.
    assert verdicts.pop(scored["datapoint"]["id"]) is False and set(verdicts.values()) == {True}
    await observability.flush()
    derived = await observability.query(
        "SELECT count() AS n FROM BooleanMetricFeedback WHERE tags['tensorzero::evaluation_run_id'] = {r:String} "
        "AND tags['tensorzero::derived_from_human_feedback'] = 'true'",
        {"r": second[0]["evaluation_run_id"]},
    )
    assert derived[0]["n"] == 1


def test_agreement_statistics_match_hand_computed_values():
    pairs = [(True, True)] * 20 + [(True, False)] * 5 + [(False, True)] * 10 + [(False, False)] * 15
    found = boolean_agreement(pairs)
    # observed agreement 0.7; chance 0.5 x 0.6 + 0.5 x 0.4 = 0.5; kappa (0.7 - 0.5) / 0.5
    assert found.accuracy == 0.7 and found.kappa == pytest.approx(0.4)
    assert found.confusion == {True: {True: 20, False: 5}, False: {True: 10, False: 15}}
    assert (found.accuracy_low, found.accuracy_high) == (wilson(50, 35).low, wilson(50, 35).high)
    assert kappa_reading(found.kappa) == "fair"
    linear = float_agreement([(0.1, 1.0), (0.2, 2.0), (0.3, 3.0)])
    assert linear.correlation == pytest.approx(1.0) and linear.mean_absolute_difference == pytest.approx(1.8)


async def test_judge_calibration_reports_agreement_with_people(client, config_file, capsys):
    base = [
        "--function-name",
        "story",
        "--evaluator-names",
        "judge",
        "--variant-name",
        "alternate",
        "--dataset-name",
        DATASET,
    ]
    _, records = await evaluate(client, config_file, *base)
    for record, verdict in zip(records[1:4], (True, True, False)):
        human = await client.post(
            "/feedback",
            json={
                "metric_name": "tensorzero::function_name::story::evaluator_name::judge",
                "inference_id": record["response"]["inference_id"],
                "value": verdict,
                "internal": True,
                "tags": {"tensorzero::datapoint_id": record["datapoint"]["id"], "tensorzero::human_feedback": "true"},
            },
        )
        assert human.status_code == 200, human.text
    out = io.StringIO()
    arguments = calibration_cli.parser().parse_args(
        ["--config-file", str(config_file), "--function-name", "story", "--evaluator-name", "judge", "--format", "json"]
    )
    assert await calibration_cli.report(arguments, client, out) == 0
    found = json.loads(out.getvalue())
    # Across this module's runs the judge always said yes; people said yes on some outputs.
    assert found["confusion"]["judge_False"] == {"human_True": 0, "human_False": 0}
    assert (
        found["count"]
        == found["confusion"]["judge_True"]["human_True"] + found["confusion"]["judge_True"]["human_False"]
    )
    assert found["cohens_kappa"] == pytest.approx(0.0)
    not_a_judge = calibration_cli.parser().parse_args(
        ["--config-file", str(config_file), "--function-name", "story", "--evaluator-name", "matches"]
    )
    assert await calibration_cli.report(not_a_judge, client, io.StringIO()) == 2
    assert "not an LLM judge" in capsys.readouterr().err


async def test_a_run_stopped_midway_shows_as_incomplete(client, config_file, observability):
    chosen = ["--function-name", "story", "--evaluator-names", "matches", "--variant-name", "good"]
    _, finished = await evaluate(client, config_file, *chosen, "--dataset-name", DATASET)
    _, precise = await evaluate(
        client, config_file, *chosen, "--dataset-name", DATASET, "--adaptive-stopping-precision", "matches=0.9"
    )
    spec = cli.build_spec(args(config_file, *chosen, "--dataset-name", DATASET), load_config(str(config_file)))
    stopped = EvaluationRunner(client, spec)
    records = stopped.run()
    await anext(records)
    await anext(records)
    await records.aclose()  # the job is killed after its first datapoint
    await observability.flush()

    listed = {r["evaluation_run_id"]: r for r in (await client.get("/internal/evaluations/runs")).json()["runs"]}
    assert listed[finished[0]["evaluation_run_id"]]["status"] == "complete"
    assert listed[precise[0]["evaluation_run_id"]]["status"] == "stopped_early"
    assert listed[stopped.run_id]["status"] == "running" and listed[stopped.run_id]["num_datapoints"] == 4
    transport = httpx.ASGITransport(app=create_ui_app(load_config(str(config_file)), observability))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as browser:
        page = (await browser.get("/evaluations/runs", params={"evaluation_run_ids": stopped.run_id})).text
    assert 'incomplete</span> <span class="muted">of 4 datapoints' in page


async def test_the_ui_lists_runs_compares_them_and_takes_a_persons_score(client, config_file, observability):
    base = ["--function-name", "story", "--evaluator-names", "matches,judge", "--dataset-name", DATASET]
    _, good = await evaluate(client, config_file, *base, "--variant-name", "good")
    _, alternate = await evaluate(client, config_file, *base, "--variant-name", "alternate")
    runs = [good[0]["evaluation_run_id"], alternate[0]["evaluation_run_id"]]
    await client.post("/workflow_evaluation_run", json={"variants": {"story": "good"}, "project_name": "ui-project"})
    await observability.flush()
    transport = httpx.ASGITransport(app=create_ui_app(load_config(str(config_file)), observability))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as browser:
        listed = await browser.get("/evaluations")
        assert listed.status_code == 200 and all(f'value="{r}"' in listed.text for r in runs)
        compared = await browser.get("/evaluations/runs", params=[("run", runs[0]), ("run", runs[1])])
        assert compared.status_code == 200, compared.text
        page = compared.text
        interval = wilson(4, 3)
        assert f'0.750 <span class="muted">[{interval.low:.3f}, {interval.high:.3f}]</span>' in page  # good: 3 of 4
        assert "0.000" in page and ALTERNATE in page and MEGUMIN in page
        unknown = await browser.get(
            "/evaluations/runs", params={"evaluation_run_ids": "0196ff53-8b0c-7e72-a23a-2a1cd1a7a8e6"}
        )
        assert unknown.status_code == 400 and "No evaluation run" in unknown.text
        workflows = await browser.get("/workflow-evaluations")
        assert workflows.status_code == 200 and "ui-project" in workflows.text and "story → good" in workflows.text

        # A person says no to `good`'s first output on the judge; the form goes back to the comparison.
        first = good[1]
        issued = await browser.get("/evaluations", headers={"cookie": "fresh=1"})
        cookie = next(c for c in issued.headers.get_list("set-cookie") if c.startswith("tzray_csrf="))
        token = cookie.split(";", 1)[0].split("=", 1)[1]
        fields = {
            "csrf_token": token,
            "metric_name": "tensorzero::function_name::story::evaluator_name::judge",
            "inference_id": first["response"]["inference_id"],
            "datapoint_id": first["datapoint"]["id"],
            "evaluation_run_ids": ",".join(runs),
            "value": "false",
        }
        posted = await browser.post(
            "/evaluations/human_feedback",
            data=fields,
            headers={"cookie": f"tzray_csrf={token}", "origin": "http://localhost"},
        )
        assert posted.status_code == 303 and "/evaluations/runs?evaluation_run_ids=" in posted.headers["location"]
    stored = await observability.query(
        "SELECT value FROM StaticEvaluationHumanFeedback WHERE datapoint_id = {d:UUID} AND metric_name = {m:String}",
        {"d": first["datapoint"]["id"], "m": fields["metric_name"]},
    )
    assert "false" in [row["value"] for row in stored]
