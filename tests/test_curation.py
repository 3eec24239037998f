"""Curation: stored inferences plus feedback become training examples in OpenAI's and TRL's
formats, rendered through the variant's templates and split the same way on every run; the
files load with Hugging Face datasets and TRL's own preprocessing."""

from __future__ import annotations

import uuid

import pytest

SYSTEM = {"assistant_name": "Alfred"}
RENDERED_SYSTEM = "You are a helpful and friendly assistant named Alfred"


async def ok(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
async def flywheel(gateway, observability) -> dict:
    """Twelve chat inferences: thumbs up on even ones, down on odd ones, a demonstration on the
    first; two answers to one repeated prompt rated up and down; three tool calls."""
    suite = uuid.uuid4().hex
    chat = []
    for n in range(12):
        body = {
            "function_name": "basic_test",
            "input": {"system": SYSTEM, "messages": [{"role": "user", "content": f"Question {n}"}]},
            "tags": {"suite": suite},
        }
        chat.append((await ok(await gateway.post("/inference", json=body)))["inference_id"])
    for n, inference_id in enumerate(chat):
        body = {"metric_name": "thumbs_up", "inference_id": inference_id, "value": n % 2 == 0}
        await ok(await gateway.post("/feedback", json=body))
    demo = {"metric_name": "demonstration", "inference_id": chat[0], "value": "Good morning, I am Alfred."}
    await ok(await gateway.post("/feedback", json=demo))
    repeated = []
    for variant, liked in (("test", True), ("echo", False)):
        body = {
            "function_name": "basic_test",
            "variant_name": variant,
            "input": {"system": SYSTEM, "messages": [{"role": "user", "content": "Same prompt"}]},
            "tags": {"suite": suite, "group": "pair"},
        }
        inference_id = (await ok(await gateway.post("/inference", json=body)))["inference_id"]
        repeated.append(inference_id)
        await ok(
            await gateway.post(
                "/feedback", json={"metric_name": "thumbs_up", "inference_id": inference_id, "value": liked}
            )
        )
    tools = []
    for city in ("Oslo", "Lima", "Rome"):
        body = {
            "function_name": "weather_helper",
            "input": {"messages": [{"role": "user", "content": f"Weather in {city}?"}]},
            "tags": {"suite": suite},
        }
        tools.append((await ok(await gateway.post("/inference", json=body)))["inference_id"])
    await observability.flush()
    return {"suite": suite, "chat": chat, "repeated": repeated, "tools": tools}


def suite(flywheel, *more) -> dict:
    tag = {"type": "tag", "key": "suite", "value": flywheel["suite"]}
    return {"type": "and", "children": [tag, *more]} if more else tag


THUMBS_UP = {"type": "boolean_metric", "metric_name": "thumbs_up", "value": True}
NOT_PAIR = {"type": "tag", "key": "group", "value": "pair", "comparison_operator": "!="}


async def curate(gateway, **body) -> dict:
    return await ok(await gateway.post("/v1/curation/examples", json=body))


async def test_openai_sft_examples_from_liked_inferences(gateway, flywheel):
    result = await curate(
        gateway, function_name="basic_test", filters=suite(flywheel, THUMBS_UP, NOT_PAIR), format="openai_sft"
    )
    assert result["counts"] == {"source_rows": 6, "examples": 6, "train": 6, "validation": 0, "skipped": 0}
    example = result["train"][0]
    system, user, assistant = example["messages"]
    assert system == {"role": "system", "content": RENDERED_SYSTEM}
    assert user["role"] == "user" and user["content"].startswith("Question ")
    assert assistant["role"] == "assistant" and "Megumin" in assistant["content"]
    assert "tools" not in example


async def test_demonstrations_replace_outputs(gateway, flywheel):
    result = await curate(
        gateway, function_name="basic_test", filters=suite(flywheel), output_source="demonstration", format="trl_sft"
    )
    (example,) = result["train"]
    assert example["messages"][-1] == {"role": "assistant", "content": "Good morning, I am Alfred."}


async def test_demonstrations_replace_outputs_where_present(gateway, flywheel):
    liked = await curate(
        gateway, function_name="basic_test", filters=suite(flywheel, THUMBS_UP, NOT_PAIR), prefer_demonstrations=True
    )
    answers = [e["messages"][-1]["content"] for e in liked["train"]]
    assert len(answers) == 6 and answers.count("Good morning, I am Alfred.") == 1
    corrected = {"type": "demonstration_feedback", "has_demonstration": True}
    disliked = {"type": "boolean_metric", "metric_name": "thumbs_up", "value": False}
    either = {"type": "or", "children": [disliked, corrected]}
    mixed = await curate(
        gateway, function_name="basic_test", filters=suite(flywheel, either, NOT_PAIR), prefer_demonstrations=True
    )
    answers = [e["messages"][-1]["content"] for e in mixed["train"]]
    assert len(answers) == 7 and answers.count("Good morning, I am Alfred.") == 1


async def test_split_is_deterministic_and_partitions_the_examples(gateway, flywheel):
    body = {"function_name": "basic_test", "filters": suite(flywheel, NOT_PAIR), "val_fraction": 0.5, "seed": 7}
    first, second = await curate(gateway, **body), await curate(gateway, **body)
    assert first == second
    assert first["counts"]["train"] + first["counts"]["validation"] == 12
    assert 0 < first["counts"]["validation"] < 12
    other_seed = await curate(gateway, **dict(body, seed=8))
    assert other_seed["validation"] != first["validation"]


async def test_dpo_pairs_from_demonstrations(gateway, flywheel):
    body = {"function_name": "basic_test", "filters": suite(flywheel)}
    trl = (await curate(gateway, **body, format="trl_dpo"))["train"]
    (pair,) = trl
    assert pair["prompt"][0] == {"role": "system", "content": RENDERED_SYSTEM}
    assert pair["chosen"] == [{"role": "assistant", "content": "Good morning, I am Alfred."}]
    assert "Megumin" in pair["rejected"][0]["content"]
    (openai,) = (await curate(gateway, **body, format="openai_dpo"))["train"]
    assert openai["input"]["messages"] == pair["prompt"]
    assert openai["preferred_output"] == pair["chosen"] and openai["non_preferred_output"] == pair["rejected"]


async def test_dpo_pairs_from_metric_feedback_on_the_same_prompt(gateway, flywheel):
    result = await curate(
        gateway,
        function_name="basic_test",
        filters=suite(flywheel),
        format="trl_dpo",
        pairs_from="metric",
        pair_metric="thumbs_up",
    )
    (pair,) = result["train"]
    assert pair["prompt"][-1] == {"role": "user", "content": "Same prompt"}
    assert "Megumin" in pair["chosen"][0]["content"]  # the `test` variant's answer was liked
    assert "Megumin" not in pair["rejected"][0]["content"]  # the `echo` variant's was not
    assert result["skipped_reasons"] == {"no better and worse output for the same prompt": 12}


async def test_tool_calls_in_each_format(gateway, flywheel):
    body = {"function_name": "weather_helper", "filters": suite(flywheel)}
    openai = (await curate(gateway, **body, format="openai_sft"))["train"][0]
    trl = (await curate(gateway, **body, format="trl_sft"))["train"][0]
    assert openai["tools"][0]["function"]["name"] == "get_temperature" and openai["tools"] == trl["tools"]
    openai_call = openai["messages"][-1]["tool_calls"][0]["function"]
    trl_call = trl["messages"][-1]["tool_calls"][0]["function"]
    assert openai_call["arguments"] == '{"location":"Brooklyn","units":"celsius"}'
    assert trl_call["arguments"] == {"location": "Brooklyn", "units": "celsius"}


async def test_examples_from_a_dataset(gateway, flywheel):
    dataset = f"cur_{uuid.uuid4().hex[:8]}"
    body = {"type": "inference_ids", "inference_ids": flywheel["chat"][:3]}
    await ok(await gateway.post(f"/v1/datasets/{dataset}/from_inferences", json=body))
    result = await curate(gateway, function_name="basic_test", dataset_name=dataset, template_variant_name="test")
    assert result["counts"]["examples"] == 3
    assert all(e["messages"][0]["content"] == RENDERED_SYSTEM for e in result["train"])


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        ({"function_name": "basic_test", "dataset_name": "x"}, 400, "template_variant_name"),
        ({"function_name": "nope"}, 404, "Unknown function"),
        ({"function_name": "basic_test", "format": "trl_dpo", "pairs_from": "metric"}, 400, "pair_metric"),
        ({"function_name": "basic_test", "format": "csv"}, 400, "format"),
        ({"function_name": "basic_test", "template_variant_name": "nope"}, 404, "Unknown variant"),
        ({"function_name": "basic_test", "val_fraction": 1.5}, 400, "val_fraction"),
    ],
)
async def test_bad_curation_requests(gateway, body, status, fragment):
    r = await gateway.post("/v1/curation/examples", json=body)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]


async def test_trl_reads_the_exported_files(gateway, flywheel, tmp_path):
    datasets = pytest.importorskip("datasets")
    trl_data = pytest.importorskip("trl.data_utils")
    from tensorzero_ray.local_models.tiny import build_tiny_model
    from tensorzero_ray.types.curation import CuratedSet

    tokenizer_dir = build_tiny_model(tmp_path / "tiny")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    sft = CuratedSet.model_validate(
        await curate(
            gateway,
            function_name="basic_test",
            filters=suite(flywheel, NOT_PAIR),
            format="trl_sft",
            val_fraction=0.3,
        )
    )
    files = sft.write_jsonl(tmp_path / "sft")
    loaded = datasets.load_dataset("json", data_files={k: str(v) for k, v in files.items()})
    assert loaded["train"].num_rows + loaded["validation"].num_rows == 12
    assert trl_data.is_conversational(loaded["train"][0])
    text = trl_data.maybe_apply_chat_template(loaded["train"][0], tokenizer)["text"]
    assert RENDERED_SYSTEM in text and "<|assistant|>" in text

    tools = CuratedSet.model_validate(
        await curate(gateway, function_name="weather_helper", filters=suite(flywheel), format="trl_sft")
    )
    tool_rows = datasets.load_dataset("json", data_files=str(tools.write_jsonl(tmp_path / "tools")["train"]))
    rendered = trl_data.maybe_apply_chat_template(tool_rows["train"][0], tokenizer)["text"]
    assert '"name": "get_temperature"' in rendered and "Brooklyn" in rendered

    dpo = CuratedSet.model_validate(
        await curate(gateway, function_name="basic_test", filters=suite(flywheel), format="trl_dpo")
    )
    pairs = datasets.load_dataset("json", data_files=str(dpo.write_jsonl(tmp_path / "dpo")["train"]))["train"]
    prepared = trl_data.maybe_apply_chat_template(pairs[0], tokenizer)
    assert prepared["prompt"].endswith("<|assistant|>\n") and "Alfred" in prepared["chosen"]

    # And TRL's trainers take the files as they are: one optimizer step each on the tiny model.
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    common = dict(max_steps=1, per_device_train_batch_size=2, report_to=[], use_cpu=True, save_strategy="no")
    model = AutoModelForCausalLM.from_pretrained(tokenizer_dir)
    sft_trainer = SFTTrainer(
        model=model,
        args=SFTConfig(output_dir=str(tmp_path / "sft_out"), **common),
        train_dataset=loaded["train"],
        processing_class=tokenizer,
    )
    assert sft_trainer.train().training_loss > 0
    dpo_trainer = DPOTrainer(
        model=model,
        args=DPOConfig(output_dir=str(tmp_path / "dpo_out"), **common),
        train_dataset=pairs,
        processing_class=tokenizer,
    )
    assert dpo_trainer.train().training_loss > 0


def test_a_split_that_asks_for_validation_data_gets_some():
    from tensorzero_ray.datasets.curation import validation_keys

    keys = [f"example-{i}" for i in range(12)]
    assert len(validation_keys(keys, 1e-9, seed=0)) == 1  # chance put none there: the lowest goes
    assert validation_keys(keys, 0.0, seed=0) == set()
    assert validation_keys(keys[:1], 0.5, seed=0) <= set(keys[:1])
    many = [f"example-{i}" for i in range(4000)]
    held = validation_keys(many, 0.25, seed=3)
    assert 0.22 < len(held) / len(many) < 0.28
    assert validation_keys(many[:2000], 0.25, seed=3) == held & set(many[:2000])  # stable as data grows
