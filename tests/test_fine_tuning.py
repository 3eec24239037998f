"""The data flywheel on the live stack: inferences and feedback seeded through the gateway, SFT
and DPO submitted with `ray job submit` on a tiny locally built model (TRL on Ray Train), the
result served by the self-hosted provider as a new variant and answering through /inference;
bad input stops a job before training; a stopped job leaves no model where the config points;
OpenAI's fine-tuning API against a mock of its wire format."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tensorzero_ray.local_models.tiny import build_tiny_model
from tensorzero_ray.optimization import fine_tuning, openai_fine_tuning
from tests.conftest import copy_tracked

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "config" / "quickstart"
RAY = [sys.executable, "-m", "ray.scripts.scripts", "job"]
DASHBOARD = "http://127.0.0.1:8265"
DEMONSTRATION = "Hello, I am Ada. How can I help?"


@pytest.fixture(scope="module")
def flywheel(serve_url, tmp_path_factory) -> dict:
    """Forty chat inferences on the quickstart stack: thumbs up on three in four, a
    demonstration on ten; and a tiny base model built here."""
    base = build_tiny_model(tmp_path_factory.mktemp("base") / "tiny")
    suite = uuid.uuid4().hex
    ids = []
    with httpx.Client(base_url=serve_url, timeout=60) as http:
        for n in range(40):
            body = {
                "function_name": "chat",
                "input": {"system": {"assistant_name": "Ada"}, "messages": [{"role": "user", "content": f"Hi {n}"}]},
                "tags": {"suite": suite},
            }
            ids.append(http.post("/inference", json=body).json()["inference_id"])
        for n, inference_id in enumerate(ids):
            liked = {"metric_name": "thumbs_up", "inference_id": inference_id, "value": n % 4 != 0}
            assert http.post("/feedback", json=liked).status_code == 200
            if n < 10:
                demo = {"metric_name": "demonstration", "inference_id": inference_id, "value": DEMONSTRATION}
                assert http.post("/feedback", json=demo).status_code == 200
        query = {"function_name": "chat", "output_source": "demonstration", "limit": 1000}
        deadline = time.monotonic() + 30
        while not set(ids[:10]) <= {
            i["inference_id"] for i in http.post("/v1/inferences/list_inferences", json=query).json()["inferences"]
        }:  # noqa: E501
            assert time.monotonic() < deadline, "seeded feedback never became visible"
            time.sleep(0.2)  # the writer flushes once a second; nothing to await from outside
    return {"url": serve_url, "base": base, "ids": ids}


def submit(script: str, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    entry = [sys.executable, str(ROOT / "jobs" / script), *args]
    return subprocess.run(
        [*RAY, "submit", "--address", DASHBOARD, "--", *entry], capture_output=True, text=True, timeout=timeout
    )


def test_sft_job_trains_a_model_and_writes_its_config_snippet(flywheel, tmp_path):
    """Serving what it made as a variant is the README walkthrough's part (tests/test_walkthrough.py)."""
    output = tmp_path / "chat-sft"
    config_dir = tmp_path / "config"
    copy_tracked(QUICKSTART, config_dir)
    done = submit(
        "sft.py",
        "--gateway", flywheel["url"], "--config", str(QUICKSTART / "tensorzero.toml"),
        "--function", "chat", "--metric", "thumbs_up", "--base-model", str(flywheel["base"]),
        "--output", str(output), "--max-steps", "30", "--learning-rate", "1e-3", "--save-steps", "10",
        "--variant-name", "tuned", "--serve-num-cpus", "0.1",
        "--write-config", str(config_dir / "finetuned.toml"),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "validation loss" in done.stdout and "Checkpoint successfully created" in done.stdout
    log = done.stdout + done.stderr
    # A log a person reads: each step's metrics and the result, no bytecode or library notices.
    assert "'loss'" in log and "eval_loss" in log
    assert "Disassembly of" not in log and "LOAD_FAST" not in log and "FutureWarning" not in log
    assert len(log.splitlines()) < 300, log[-3000:]
    report = json.loads((output / fine_tuning.REPORT_FILE).read_text())
    assert report["validation_loss_after"] < report["validation_loss_before"]
    assert report["examples"]["examples"] >= 30 and report["steps"] == 30
    assert (output / "config.json").is_file() and (output / "tokenizer.json").is_file()
    assert not list(tmp_path.glob("chat-sft.partial-*"))
    # The snippet names its files relative to the config it went into, not by this machine's paths.
    written = (config_dir / "finetuned.toml").read_text()
    assert 'model_name = "../chat-sft"' in written and '= "/' not in written


def test_dpo_job_on_demonstration_pairs(flywheel, tmp_path):
    output = tmp_path / "chat-dpo"
    done = submit(
        "dpo.py",
        "--gateway", flywheel["url"], "--config", str(QUICKSTART / "tensorzero.toml"), "--function", "chat",
        "--base-model", str(flywheel["base"]), "--output", str(output), "--max-steps", "3", "--save-steps", "2",
        "--learning-rate", "1e-4", "--min-examples", "5",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    report = json.loads((output / fine_tuning.REPORT_FILE).read_text())
    assert report["method"] == "dpo" and report["examples"]["examples"] >= 10 and report["steps"] == 3
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(output).config.num_hidden_layers == 2


def spec(flywheel, tmp_path, **changes) -> fine_tuning.FineTuneSpec:
    fields = dict(
        method="sft",
        gateway=flywheel["url"],
        config=str(QUICKSTART / "tensorzero.toml"),
        function="chat",
        metric="thumbs_up",
        base_model=str(flywheel["base"]),
        output=tmp_path / "out",
    )
    return fine_tuning.FineTuneSpec(**{**fields, **changes})


def test_too_few_examples_fail_fast_with_the_count_and_the_filter(flywheel, tmp_path):
    with pytest.raises(fine_tuning.FineTuningError) as failed:
        fine_tuning.run(spec(flywheel, tmp_path, min_examples=100_000))
    message = str(failed.value)
    assert "found " in message and "need at least 100000" in message and '"thumbs_up"' in message
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out.partial-*"))


def test_a_job_that_cannot_get_its_cpus_fails_at_once_naming_the_option(flywheel, tmp_path):
    """The stack holds the cluster's CPUs; workers that ask for more than is free would wait
    forever. The job stops before reading any data, naming what is missing and the option."""
    done = submit(
        "sft.py",
        "--gateway", flywheel["url"], "--config", str(QUICKSTART / "tensorzero.toml"), "--function", "chat",
        "--metric", "thumbs_up", "--base-model", str(flywheel["base"]), "--output", str(tmp_path / "never"),
        "--cpus-per-worker", "64",
        timeout=180,
    )  # fmt: skip
    assert done.returncode != 0
    logs = done.stdout + done.stderr
    assert "Not enough resources to start training" in logs and "--cpus-per-worker" in logs and "64 CPU" in logs
    assert "curating" not in logs and not (tmp_path / "never").exists()


def test_a_base_model_that_is_not_a_model_is_refused_before_anything_else(flywheel, tmp_path):
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    with pytest.raises(fine_tuning.FineTuningError, match="not a model directory"):
        fine_tuning.run(spec(flywheel, tmp_path, base_model=str(not_a_model), gateway="http://127.0.0.1:9"))
    with pytest.raises(fine_tuning.FineTuningError, match="could not be loaded"):
        fine_tuning.run(spec(flywheel, tmp_path, base_model="no such/model!", gateway="http://127.0.0.1:9"))


def test_a_stopped_job_leaves_no_model_where_the_config_points(flywheel, tmp_path):
    output = tmp_path / "stopped"
    entry = [
        sys.executable, str(ROOT / "jobs" / "sft.py"), "--gateway", flywheel["url"],
        "--config", str(QUICKSTART / "tensorzero.toml"), "--function", "chat", "--metric", "thumbs_up",
        "--base-model", str(flywheel["base"]), "--output", str(output), "--max-steps", "100000", "--save-steps", "5",
    ]  # fmt: skip
    job_id = f"stop-test-{uuid.uuid4().hex[:8]}"
    started = subprocess.run(
        [*RAY, "submit", "--no-wait", "--submission-id", job_id, "--address", DASHBOARD, "--", *entry],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 0, started.stderr[-2000:]
    deadline = time.monotonic() + 180
    while "Checkpoint successfully created" not in _logs(job_id):
        assert time.monotonic() < deadline, _logs(job_id)[-3000:]
        time.sleep(1)  # polling another process's logs: there is no event to await
    stopped = subprocess.run([*RAY, "stop", "--address", DASHBOARD, job_id], capture_output=True, text=True)
    assert stopped.returncode == 0, stopped.stderr
    assert not output.exists()
    assert list(tmp_path.glob("stopped.partial-*"))  # the run's checkpoints, never at `output`


def _logs(job_id: str) -> str:
    return subprocess.run([*RAY, "logs", "--address", DASHBOARD, job_id], capture_output=True, text=True).stdout


def test_openai_fine_tuning_against_its_wire_format(flywheel, openai_mock, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TEST_OPENAI_KEY", openai_mock.api_key)
    snippet_file = tmp_path / "openai.toml"
    args = [
        "--gateway", flywheel["url"], "--config", str(QUICKSTART / "tensorzero.toml"), "--function", "chat",
        "--metric", "thumbs_up", "--model", "gpt-4o-mini-2024-07-18", "--api-base", f"{openai_mock.url}/v1",
        "--api-key-env", "TEST_OPENAI_KEY", "--poll-interval", "0", "--n-epochs", "2",
        "--write-config", str(snippet_file),
    ]  # fmt: skip
    assert openai_fine_tuning.main(args) == 0
    body = openai_mock.job_bodies[-1]
    assert body["method"] == {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}
    training = openai_mock.uploads[body["training_file"]]
    assert training["purpose"] == "fine-tune" and len(training["rows"]) >= 20
    assert training["rows"][0]["messages"][0]["content"] == "You are Ada, a helpful and concise assistant."
    written = snippet_file.read_text()
    assert 'model_name = "ft:gpt-4o-mini-2024-07-18:tensorzero-ray::' in written and 'type = "openai"' in written
    printed = capsys.readouterr()
    assert "openai: Job status: running" in printed.out and openai_mock.api_key not in printed.out + printed.err

    failing = [*args[:-2]]
    failing[failing.index("gpt-4o-mini-2024-07-18")] = "fail-model"
    assert openai_fine_tuning.main(failing) == 2
    assert "The job failed on the provider" in capsys.readouterr().err

    dpo = [*args[:-2], "--method", "dpo", "--min-examples", "5"]
    assert openai_fine_tuning.main(dpo) == 0
    pairs = openai_mock.uploads[openai_mock.job_bodies[-1]["training_file"]]["rows"]
    assert pairs[0]["preferred_output"] == [{"role": "assistant", "content": DEMONSTRATION}]
