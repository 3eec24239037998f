"""Supervised fine-tuning and DPO as Ray jobs (`jobs/sft.py`, `jobs/dpo.py`): check the base
model, curate examples from the store through the gateway, train with TRL on Ray Train, and
put the model where the config will point only once it is complete.

The model and the run's checkpoints are written under `<output>.partial-<id>/`, and the model
is renamed to `<output>` only when training has finished, so a job stopped with `ray job
stop` (or failing) never leaves a half-written model at `<output>`, where a config points.
A stopped job's partial directory keeps its checkpoints; delete it when done with them."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from tensorzero_ray.client import TensorZeroRayClient
from tensorzero_ray.config import Config, load_config
from tensorzero_ray.config.functions import JsonFunctionConfig
from tensorzero_ray.config.variants import ChatCompletionVariantConfig
from tensorzero_ray.optimization.snippet import (
    ray_serve_model_snippet,
    snippet_home,
    variant_snippet,
    write_snippet,
)
from tensorzero_ray.types.curation import CuratedSet

REPORT_FILE = "tensorzero_report.json"
SNIPPET_FILE = "tensorzero_snippet.toml"


class FineTuningError(Exception):
    """Stops the job before training, with a message that says what to change."""


class DataSpec(BaseModel):
    """Which stored data a fine-tuning job learns from, and how its result is named."""

    method: Literal["sft", "dpo"]
    gateway: str = "http://127.0.0.1:8000"
    config: str
    function: str
    metric: str | None = None
    threshold: float | None = None
    template_variant: str | None = None
    pairs_from: Literal["demonstration", "metric"] = "demonstration"
    val_fraction: float = Field(default=0.2, ge=0, lt=1)
    seed: int = 0
    limit: int = Field(default=10_000, ge=1)
    min_examples: int = Field(default=8, ge=1)
    beta: float = 0.1
    variant_name: str | None = None
    model_name: str | None = None
    weight: float = Field(default=0.1, ge=0)
    write_config: Path | None = None


class FineTuneSpec(DataSpec):
    """A TRL run on Ray Train: the base model, where the result goes, and how to train."""

    base_model: str
    output: Path
    overwrite: bool = False
    max_steps: int = -1
    epochs: float = 3.0
    learning_rate: float = 5e-5
    batch_size: int = Field(default=4, ge=1)
    max_length: int = Field(default=1024, ge=16)
    lora_r: int = Field(default=0, ge=0)
    num_workers: int = Field(default=1, ge=1)
    cpus_per_worker: float = Field(default=1.0, gt=0)
    use_gpu: bool = False
    bf16: bool = False
    save_steps: int = Field(default=50, ge=1)
    serve_num_cpus: float | None = Field(default=None, ge=0)
    serve_num_gpus: float | None = Field(default=None, ge=0)


def check_base_model(name: str) -> None:
    """A local directory must hold a model (config.json); anything else must load as a hub
    name. Checked before any data is read or any worker starts."""
    path = Path(name).expanduser()
    looks_like_path = name.startswith((".", "/", "~")) or path.exists()
    if looks_like_path:
        if not path.is_dir() or not (path / "config.json").is_file():
            raise FineTuningError(f"Base model `{name}` is not a model directory (no config.json in {path})")
        return
    try:
        from transformers import AutoConfig

        AutoConfig.from_pretrained(name)
    except Exception as exc:  # noqa: BLE001 - any failure here means "not a usable model"
        raise FineTuningError(f"Base model `{name}` could not be loaded: {exc}") from None


def worker_resources(spec: FineTuneSpec) -> dict[str, float]:
    resources = {"CPU": spec.cpus_per_worker}
    if spec.use_gpu:
        resources["GPU"] = 1.0
    return resources


def check_resources(spec: FineTuneSpec) -> None:
    """The cluster is shared with the running stack: fail at once, naming what is missing and
    the option that lowers it, instead of waiting forever for workers that cannot start."""
    import ray

    if not ray.is_initialized():
        ray.init(address="auto")  # workers' logs still reach the job's
    per_worker = worker_resources(spec)
    free = ray.available_resources()
    total = ray.cluster_resources()
    short = {
        name: amount * spec.num_workers
        for name, amount in per_worker.items()
        if free.get(name, 0.0) + 1e-9 < amount * spec.num_workers
    }
    if not short:
        return
    lowers = {"CPU": "--cpus-per-worker (e.g. 0.5) or --num-workers", "GPU": "--num-workers, or drop --use-gpu"}
    details = "; ".join(
        f"{amount:g} {name} for {spec.num_workers} worker(s), {free.get(name, 0.0):g} free of "
        f"{total.get(name, 0.0):g} (lower it with {lowers[name]})"
        for name, amount in short.items()
    )
    raise FineTuningError(f"Not enough resources to start training: needs {details}")


def template_variant_for(config: Config, spec: DataSpec) -> str:
    function = config.functions[spec.function]
    if spec.template_variant is not None:
        if not isinstance(function.variants.get(spec.template_variant), ChatCompletionVariantConfig):
            raise FineTuningError(
                f"`--template-variant {spec.template_variant}` is not a chat_completion variant of `{spec.function}`"
            )
        return spec.template_variant
    for name, variant in function.variants.items():
        if isinstance(variant, ChatCompletionVariantConfig):
            return name
    raise FineTuningError(f"Function `{spec.function}` has no chat_completion variant whose templates to use")


def metric_filter(config: Config, spec: DataSpec) -> dict[str, Any] | None:
    if spec.metric is None:
        return None
    metric = config.metrics.get(spec.metric)
    if metric is None:
        raise FineTuningError(f"Unknown metric `{spec.metric}`: it is not in the config's [metrics]")
    if metric.type == "boolean":
        return {"type": "boolean_metric", "metric_name": spec.metric, "value": metric.optimize == "max"}
    if spec.threshold is None:
        raise FineTuningError(f"`{spec.metric}` is a float metric: give `--threshold`")
    op = ">=" if metric.optimize == "max" else "<="
    return {"type": "float_metric", "metric_name": spec.metric, "value": spec.threshold, "comparison_operator": op}


def curation_request(config: Config, spec: DataSpec, template_variant: str) -> dict[str, Any]:
    good = metric_filter(config, spec)
    body: dict[str, Any] = {
        "function_name": spec.function,
        "template_variant_name": template_variant,
        "val_fraction": spec.val_fraction,
        "seed": spec.seed,
        "limit": spec.limit,
    }
    if spec.method == "sft":
        body["format"] = "trl_sft"
        # Good examples, plus every human correction; a demonstration replaces its output.
        corrected = {"type": "demonstration_feedback", "has_demonstration": True}
        body["filters"] = {"type": "or", "children": [good, corrected]} if good else None
        body["prefer_demonstrations"] = True
    else:
        body["format"] = "trl_dpo"
        body["pairs_from"] = spec.pairs_from
        if spec.pairs_from == "metric":
            if spec.metric is None:
                raise FineTuningError("DPO pairs from a metric need `--metric`")
            body["pair_metric"] = spec.metric
    return body


def curate(gateway: str, request: dict[str, Any]) -> CuratedSet:
    """Examples from the store, through the gateway that owns it."""
    with TensorZeroRayClient(gateway) as client:
        return client.curate(**request)


def _local_or_hub(name: str) -> str:
    """An absolute path for a local model (workers may not share this cwd), else the name."""
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(spec: FineTuneSpec) -> dict[str, Any]:
    started = time.monotonic()
    config = load_config(spec.config)
    if spec.function not in config.functions:
        raise FineTuningError(f"Unknown function `{spec.function}`: it is not in {spec.config}")
    output = spec.output.expanduser().resolve()
    if output.exists() and not spec.overwrite:
        raise FineTuningError(f"{output} already exists; pass --overwrite to replace it when training succeeds")
    check_base_model(spec.base_model)
    check_resources(spec)
    template_variant = template_variant_for(config, spec)
    request = curation_request(config, spec, template_variant)
    log(f"curating {spec.method.upper()} examples for `{spec.function}` from {spec.gateway}")
    curated = curate(spec.gateway, request)
    counts = curated.counts
    log(f"{counts.examples} examples ({counts.train} train, {counts.validation} validation, {counts.skipped} skipped)")
    if counts.examples < spec.min_examples:
        raise FineTuningError(
            f"Too few examples to train on: found {counts.examples} (need at least {spec.min_examples}) for "
            f"function `{spec.function}` with filters {json.dumps(request.get('filters'))}"
            + (f" and pairs from {spec.pairs_from}" if spec.method == "dpo" else "")
            + (f"; skipped: {curated.skipped_reasons}" if curated.skipped_reasons else "")
        )
    staging = output.with_name(f"{output.name}.partial-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    try:
        metrics, model_dir = _train(spec, curated, staging)
        report = {
            "method": spec.method,
            "function": spec.function,
            "base_model": spec.base_model,
            "template_variant": template_variant,
            "curation": request,
            "examples": counts.model_dump(),
            "skipped_reasons": curated.skipped_reasons,
            **metrics,
            "seconds": round(time.monotonic() - started, 1),
            "output": str(output),
        }
        snippet = _snippet(config, spec, template_variant, output)
        (model_dir / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
        (model_dir / SNIPPET_FILE).write_text(snippet)
        if output.exists():
            shutil.rmtree(output)
        os.replace(model_dir, output)
    except BaseException:
        log(f"no model written; checkpoints, if any, stay in {staging}")
        raise
    shutil.rmtree(staging, ignore_errors=True)
    if spec.write_config is not None:
        write_snippet(spec.write_config, snippet)
        log(f"config snippet appended to {spec.write_config}")
    log(f"model written to {output}")
    print("\n# Config snippet (also in " + str(output / SNIPPET_FILE) + "):\n" + snippet, flush=True)
    print(json.dumps({"validation_loss": [report["validation_loss_before"], report["validation_loss_after"]]}))
    return report


def _train(spec: FineTuneSpec, curated, staging: Path) -> tuple[dict[str, Any], Path]:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from tensorzero_ray.optimization.trainers import train_loop

    steps_hint = spec.max_steps if spec.max_steps > 0 else 100
    loop_config = {
        "method": spec.method,
        "base_model": _local_or_hub(spec.base_model),
        "train": curated.train,
        "validation": curated.validation,
        "checkpoint_dir": str(staging / "checkpoints"),
        "max_steps": spec.max_steps,
        "epochs": spec.epochs,
        "batch_size": spec.batch_size,
        "learning_rate": spec.learning_rate,
        "eval_steps": max(1, min(spec.save_steps, steps_hint // 4 or 1)),
        "save_steps": spec.save_steps,
        "max_length": spec.max_length,
        "beta": spec.beta,
        "lora_r": spec.lora_r,
        "use_gpu": spec.use_gpu,
        "bf16": spec.bf16,
        "seed": spec.seed,
    }
    log(f"training on {spec.num_workers} {'GPU' if spec.use_gpu else 'CPU'} worker(s) with Ray Train")
    # Ray Train logs every `print` in the workers, even output a library captures for itself
    # (dill disassembles TRL's functions into a buffer to hash them): thousands of lines of
    # bytecode. Workers print through the plain `print` instead.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(
            num_workers=spec.num_workers, use_gpu=spec.use_gpu, resources_per_worker=worker_resources(spec)
        ),
        run_config=RunConfig(
            name=f"{spec.method}-{spec.function}-{staging.name[-8:]}", storage_path=str(staging / "ray")
        ),
    )
    result = trainer.fit()
    if result.error is not None:
        raise FineTuningError(f"Training failed: {result.error}")
    metrics = {k: v for k, v in result.metrics.items() if k != "final"}
    model_dir = staging / "model"
    result.checkpoint.to_directory(str(model_dir))
    log(
        f"validation loss {metrics['validation_loss_before']:.4f} -> {metrics['validation_loss_after']:.4f} "
        f"after {metrics['steps']} steps"
    )
    return metrics, model_dir


def _snippet(config: Config, spec: FineTuneSpec, template_variant: str, output: Path) -> str:
    function = config.functions[spec.function]
    default = re.sub(r"[^A-Za-z0-9_]", "_", output.name)
    model_name = spec.model_name or default
    variant_name = spec.variant_name or default
    template = function.variants[template_variant]
    actor_options = {
        k: v for k, v in (("num_cpus", spec.serve_num_cpus), ("num_gpus", spec.serve_num_gpus)) if v is not None
    }
    home = snippet_home(spec.config, spec.write_config)
    snippet = ray_serve_model_snippet(model_name, output, home, actor_options) + "\n"
    snippet += variant_snippet(
        home=home,
        function_name=spec.function,
        function=function,
        variant_name=variant_name,
        model_name=model_name,
        template=template if isinstance(template, ChatCompletionVariantConfig) else None,
        weight=spec.weight,
    )
    if isinstance(function, JsonFunctionConfig):
        snippet += "# A JSON function: the model learned to answer with the JSON text of its examples.\n"
    return snippet


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every fine-tuning job shares: where the data comes from, and how the
    result is named in the config snippet."""
    parser.add_argument("--gateway", default=os.environ.get("TENSORZERO_GATEWAY_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--config", required=True, help="the tensorzero.toml (path or glob) the gateway runs")
    parser.add_argument("--function", required=True)
    parser.add_argument("--metric", help="keep inferences this metric rates well (boolean: its good value)")
    parser.add_argument("--threshold", type=float, help="for a float metric: at least (max) or at most (min)")
    parser.add_argument("--template-variant", help="the variant whose templates render the inputs")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=10_000, help="at most this many stored inferences")
    parser.add_argument("--variant-name", help="name of the new variant in the snippet")
    parser.add_argument("--model-name", help="name of the new model in the snippet")
    parser.add_argument("--weight", type=float, default=0.1, help="the new variant's sampling weight")
    parser.add_argument("--write-config", type=Path, help="also append the snippet to this config file")


def parse_args(method: str, argv: list[str] | None) -> FineTuneSpec:
    what = "supervised fine-tuning" if method == "sft" else "DPO"
    parser = argparse.ArgumentParser(prog=f"jobs/{method}.py", description=f"{what} on stored inferences, on Ray.")
    add_data_arguments(parser)
    if method == "dpo":
        parser.add_argument("--pairs-from", choices=["demonstration", "metric"], default="demonstration")
        parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--min-examples", type=int, default=8)
    parser.add_argument("--base-model", required=True, help="a model directory or a hub name")
    parser.add_argument("--output", required=True, type=Path, help="where the trained model goes")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--max-steps", type=int, default=-1, help="optimizer steps (default: --epochs)")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--lora-r", type=int, default=0, help="train a LoRA adapter of this rank (then merged)")
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument(
        "--cpus-per-worker", type=float, default=1.0, help="CPUs each training worker asks for (default 1)"
    )
    parser.add_argument("--use-gpu", action="store_true")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--save-steps", type=int, default=50, help="checkpoint every this many steps")
    parser.add_argument("--serve-num-cpus", type=float, help="CPUs per replica of the served model (snippet)")
    parser.add_argument("--serve-num-gpus", type=float, help="GPUs per replica of the served model (snippet)")
    args = vars(parser.parse_args(argv))
    return FineTuneSpec(method=method, **{k: v for k, v in args.items() if v is not None})


def main(method: str, argv: list[str] | None = None) -> int:
    try:
        run(parse_args(method, argv))
    except FineTuningError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0
