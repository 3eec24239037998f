"""Fine-tuning on OpenAI: curate examples from the store, upload them as JSONL, create a
fine-tuning job (supervised or DPO), follow it until it ends, and emit the config snippet for
the fine-tuned model (`jobs/openai_sft.py`). The API key comes from an environment variable
and is never printed or written."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tensorzero_ray.config import load_config
from tensorzero_ray.config.variants import ChatCompletionVariantConfig
from tensorzero_ray.optimization.fine_tuning import (
    DataSpec,
    FineTuningError,
    add_data_arguments,
    curate,
    curation_request,
    log,
    template_variant_for,
)
from tensorzero_ray.optimization.snippet import openai_model_snippet, snippet_home, variant_snippet, write_snippet

TERMINAL = ("succeeded", "failed", "cancelled")


class OpenAIFineTuning:
    """OpenAI's files and fine-tuning jobs endpoints."""

    def __init__(self, api_base: str, api_key: str, *, timeout_s: float = 120.0):
        self._http = httpx.Client(
            base_url=api_base.rstrip("/"), headers={"authorization": f"Bearer {api_key}"}, timeout=timeout_s
        )

    def close(self) -> None:
        self._http.close()

    def _checked(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:500]
            raise FineTuningError(f"OpenAI answered {response.status_code}: {message}")
        return response.json()

    def upload(self, path: Path) -> str:
        with path.open("rb") as handle:
            response = self._http.post(
                "/files", data={"purpose": "fine-tune"}, files={"file": (path.name, handle, "application/jsonl")}
            )
        return self._checked(response)["id"]

    def create_job(
        self,
        *,
        model: str,
        training_file: str,
        validation_file: str | None,
        method: str,
        hyperparameters: dict[str, Any],
        suffix: str | None,
        seed: int | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "training_file": training_file,
            "method": {"type": method, method: {"hyperparameters": hyperparameters}},
        }
        if validation_file:
            body["validation_file"] = validation_file
        if suffix:
            body["suffix"] = suffix
        if seed is not None:
            body["seed"] = seed
        return self._checked(self._http.post("/fine_tuning/jobs", json=body))

    def job(self, job_id: str) -> dict[str, Any]:
        return self._checked(self._http.get(f"/fine_tuning/jobs/{job_id}"))

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """Newest first, as OpenAI lists them."""
        return self._checked(self._http.get(f"/fine_tuning/jobs/{job_id}/events", params={"limit": 100}))["data"]

    def wait(
        self,
        job_id: str,
        *,
        poll_interval_s: float,
        timeout_s: float | None = None,
        on_event: Callable[[str], None] = log,
    ) -> dict[str, Any]:
        """Poll until the job ends, passing each new event's message on."""
        seen: set[str] = set()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            for event in reversed(self.events(job_id)):
                if event["id"] not in seen:
                    seen.add(event["id"])
                    on_event(f"openai: {event['message']}")
            if job["status"] in TERMINAL:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise FineTuningError(f"OpenAI job {job_id} still `{job['status']}` after {timeout_s} s")
            time.sleep(poll_interval_s)


def run(spec: DataSpec, args: argparse.Namespace) -> dict[str, Any]:
    api_key = os.environ.get(args.api_key_env)
    if not api_key:
        raise FineTuningError(f"Set the OpenAI API key in ${args.api_key_env}")
    config = load_config(spec.config)
    if spec.function not in config.functions:
        raise FineTuningError(f"Unknown function `{spec.function}`: it is not in {spec.config}")
    template_variant = template_variant_for(config, spec)
    request = curation_request(config, spec, template_variant)
    request["format"] = "openai_sft" if spec.method == "sft" else "openai_dpo"
    curated = curate(spec.gateway, request)
    if curated.counts.examples < spec.min_examples:
        raise FineTuningError(
            f"Too few examples to fine-tune on: found {curated.counts.examples} (need at least {spec.min_examples}) "
            f"for function `{spec.function}` with filters {json.dumps(request.get('filters'))}"
        )
    log(f"{curated.counts.train} training and {curated.counts.validation} validation examples")
    openai = OpenAIFineTuning(args.api_base, api_key)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            files = curated.write_jsonl(tmp)
            training = openai.upload(files["train"])
            validation = openai.upload(files["validation"]) if "validation" in files else None
        hyper = {"n_epochs": args.n_epochs} if args.n_epochs else {}
        if spec.method == "dpo":
            hyper["beta"] = spec.beta
        job = openai.create_job(
            model=args.model,
            training_file=training,
            validation_file=validation,
            method="supervised" if spec.method == "sft" else "dpo",
            hyperparameters=hyper,
            suffix=args.suffix,
            seed=spec.seed,
        )
        log(f"OpenAI fine-tuning job {job['id']} created ({job['status']})")
        job = openai.wait(job["id"], poll_interval_s=args.poll_interval, timeout_s=args.timeout)
    finally:
        openai.close()
    if job["status"] != "succeeded":
        error = (job.get("error") or {}).get("message") or job["status"]
        raise FineTuningError(f"OpenAI job {job['id']} {job['status']}: {error}")
    function = config.functions[spec.function]
    template = function.variants[template_variant]
    name = spec.model_name or f"{spec.function}_{spec.method}_openai"
    snippet = openai_model_snippet(name, job["fine_tuned_model"]) + "\n"
    snippet += variant_snippet(
        home=snippet_home(spec.config, spec.write_config),
        function_name=spec.function,
        function=function,
        variant_name=spec.variant_name or name,
        model_name=name,
        template=template if isinstance(template, ChatCompletionVariantConfig) else None,
        weight=spec.weight,
    )
    if spec.write_config is not None:
        write_snippet(spec.write_config, snippet)
    print("\n# Config snippet:\n" + snippet, flush=True)
    summary = {
        "job": job["id"],
        "fine_tuned_model": job["fine_tuned_model"],
        "trained_tokens": job.get("trained_tokens"),
    }
    print(json.dumps(summary))
    return {"job": job, "snippet": snippet}


OPENAI_OPTIONS = ("model", "api_base", "api_key_env", "n_epochs", "suffix", "poll_interval", "timeout")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobs/openai_sft.py", description="Fine-tune an OpenAI model on stored data.")
    add_data_arguments(parser)
    parser.add_argument("--method", choices=["sft", "dpo"], default="sft")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--min-examples", type=int, default=10)
    parser.add_argument("--model", required=True, help="the OpenAI model to fine-tune, e.g. gpt-4o-mini-2024-07-18")
    parser.add_argument("--api-base", default=os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1"))
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY", help="the environment variable with the key")
    parser.add_argument("--n-epochs", type=int)
    parser.add_argument("--suffix")
    parser.add_argument("--poll-interval", type=float, default=15.0)
    parser.add_argument("--timeout", type=float, help="give up after this many seconds")
    args = parser.parse_args(argv)
    fields = {k: v for k, v in vars(args).items() if k not in OPENAI_OPTIONS and v is not None}
    try:
        run(DataSpec(**fields), args)
    except FineTuningError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0
