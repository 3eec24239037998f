"""What each Ray Train worker runs: TRL's SFT or DPO trainer on the curated examples, the
validation loss before and after, and the final model reported as the run's checkpoint."""

from __future__ import annotations

import tempfile
import time
import warnings
from typing import Any


def _quiet_libraries() -> None:
    """The job's log is for people: progress and results, not library deprecation notices or
    progress bars redrawn per batch (the trainer still prints each step's metrics)."""
    import datasets
    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(torch|transformers|trl|peft)\.")
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity_error()


def train_loop(config: dict[str, Any]) -> None:
    import ray.train
    import torch
    from datasets import Dataset
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_libraries()

    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(config["base_model"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if config["bf16"] else None
    model = AutoModelForCausalLM.from_pretrained(config["base_model"], dtype=dtype)
    peft_config = None
    if config["lora_r"]:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=config["lora_r"], lora_alpha=2 * config["lora_r"], target_modules="all-linear", task_type="CAUSAL_LM"
        )
    train = Dataset.from_list(config["train"])
    # Without a validation split, the losses are measured on the training examples.
    validation = Dataset.from_list(config["validation"] or config["train"])
    common = dict(
        output_dir=config["checkpoint_dir"],
        max_steps=config["max_steps"],
        num_train_epochs=config["epochs"],
        per_device_train_batch_size=config["batch_size"],
        per_device_eval_batch_size=config["batch_size"],
        learning_rate=config["learning_rate"],
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=config["eval_steps"],
        save_strategy="steps",
        save_steps=config["save_steps"],
        save_total_limit=2,
        report_to=[],
        disable_tqdm=True,
        use_cpu=not config["use_gpu"],
        bf16=config["bf16"],
        seed=config["seed"],
        max_length=config["max_length"],
    )
    if config["method"] == "sft":
        from trl import SFTConfig, SFTTrainer

        trainer = SFTTrainer(
            model=model,
            args=SFTConfig(**common),
            train_dataset=train,
            eval_dataset=validation,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    else:
        from trl import DPOConfig, DPOTrainer

        trainer = DPOTrainer(
            model=model,
            args=DPOConfig(**common, beta=config["beta"]),
            train_dataset=train,
            eval_dataset=validation,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    trainer.add_callback(RayTrainReportCallback())
    trainer = prepare_trainer(trainer)
    before = trainer.evaluate()["eval_loss"]
    result = trainer.train()
    after = trainer.evaluate()["eval_loss"]
    metrics = {
        "validation_loss_before": float(before),
        "validation_loss_after": float(after),
        "train_loss": float(result.training_loss),
        "steps": int(result.global_step),
        "train_seconds": round(time.monotonic() - started, 1),
        "validation_on": "validation" if config["validation"] else "train",
    }
    with tempfile.TemporaryDirectory() as final:
        checkpoint = None
        if ray.train.get_context().get_world_rank() == 0:
            trained = trainer.model
            if peft_config is not None:
                trained = trained.merge_and_unload()
            trained.save_pretrained(final)
            tokenizer.save_pretrained(final)
            checkpoint = ray.train.Checkpoint.from_directory(final)
        ray.train.report({**metrics, "final": 1}, checkpoint=checkpoint)
