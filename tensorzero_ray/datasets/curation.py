"""Curation: stored inferences (or a dataset) plus feedback become training examples (spec
§6.1). Inputs are rendered through a variant's templates, so the examples hold the final
system prompt and messages the model saw; the split is a hash of each example's id, so it is
the same on every run and an example never moves between splits as data grows."""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from types import SimpleNamespace
from typing import Any

import orjson
from pydantic import TypeAdapter

from tensorzero_ray.config import Config
from tensorzero_ray.config.functions import DEFAULT_FUNCTION
from tensorzero_ray.config.variants import ChatCompletionVariantConfig
from tensorzero_ray.datasets.inferences import StoredInferenceQueries
from tensorzero_ray.datasets.service import DatasetService
from tensorzero_ray.datasets.store_access import read
from tensorzero_ray.errors import InvalidRequest, TensorZeroError, UnknownVariant
from tensorzero_ray.inference.model import RequestExtras
from tensorzero_ray.inference.tools import ToolCatalog
from tensorzero_ray.types import ChatCompletionParams, DynamicTool, Input, Text, ToolCall, ToolResult
from tensorzero_ray.types.curation import CuratedSet, CurationCounts, CurationRequest
from tensorzero_ray.types.datasets import ListDatapointsRequest
from tensorzero_ray.types.stored import GetInferencesRequest, ListInferencesRequest, StoredInference
from tensorzero_ray.variants.base import InferenceCall
from tensorzero_ray.variants.chat_completion import ChatCompletionVariant


def split_position(example_id: str, seed: int) -> float:
    """Where an example falls in [0, 1): by its id, so it keeps its side as data grows."""
    digest = hashlib.blake2b(f"{seed}:{example_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def validation_keys(keys: list[str], val_fraction: float, seed: int) -> set[str]:
    """Examples whose position is under `val_fraction`; when chance leaves none there, the
    lowest one, so a split that asks for validation data gets some (from two examples up)."""
    positions = {key: split_position(key, seed) for key in keys}
    chosen = {key for key, position in positions.items() if position < val_fraction}
    if not chosen and val_fraction > 0 and len(keys) >= 2:
        chosen = {min(positions, key=positions.get)}
    return chosen


class _Renderer:
    """A stored input through one variant's templates, as chat messages."""

    def __init__(self, config: Config, function_name: str, function, variant_name: str | None):
        self.function = function
        self.function_name = function_name
        self.tools = ToolCatalog(config.tools)
        self._variants: dict[str, ChatCompletionVariant] = {}
        self._config = config
        self._fixed = variant_name
        if variant_name is not None:
            self._variant(variant_name)

    def _variant(self, name: str) -> ChatCompletionVariant:
        if name not in self._variants:
            if self.function_name == DEFAULT_FUNCTION:
                config = ChatCompletionVariantConfig(type="chat_completion", model=name)
            else:
                config = self.function.variants.get(name)
                if config is None:
                    raise UnknownVariant(name)
                if not isinstance(config, ChatCompletionVariantConfig):
                    raise InvalidRequest(
                        f"Variant `{name}` is of type `{config.type}`; pick a `chat_completion` variant "
                        "with `template_variant_name` to render inputs"
                    )
            self._variants[name] = ChatCompletionVariant(
                name,
                config,
                None,
                set(self.function.schema_files()),
                self._config.gateway.template_filesystem_access.root(),
            )
        return self._variants[name]

    def prompt(self, sample: StoredInference, *, tool_arguments_as_text: bool) -> tuple[list[dict], list[dict]]:
        """(messages before the answer, tools in OpenAI's function format)."""
        variant = self._variant(self._fixed or sample.variant_name)
        tools = self._tool_settings(sample)
        value = Input.model_validate(sample.input)
        request = variant.prepare(
            InferenceCall(
                function_type="json" if sample.type == "json" else "chat",
                system=value.system,
                messages=value.messages,
                params=ChatCompletionParams(),
                output_schema=sample.output_schema,
                tool_settings=tools,
                extras=RequestExtras(),
            )
        )
        messages: list[dict] = []
        if request.system is not None:
            messages.append({"role": "system", "content": request.system})
        for message in request.messages:
            messages.extend(_chat_messages(message.role, message.content, tool_arguments_as_text))
        tool_list = [
            {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
            for t in (tools.tools if tools else [])
        ]
        return messages, tool_list

    def _tool_settings(self, sample: StoredInference):
        if sample.type == "json":
            return None
        used = SimpleNamespace(
            allowed_tools=sample.allowed_tools,
            additional_tools=[TypeAdapter(DynamicTool).validate_python(t) for t in sample.additional_tools or []],
            tool_choice=None,
            parallel_tool_calls=sample.parallel_tool_calls,
        )
        return self.tools.settings(self.function if self.function_name != DEFAULT_FUNCTION else None, used)


def _chat_messages(role: str, blocks: list, tool_arguments_as_text: bool) -> list[dict]:
    texts: list[str] = []
    calls: list[dict] = []
    results: list[dict] = []
    for block in blocks:
        if isinstance(block, Text):
            texts.append(block.text)
        elif isinstance(block, ToolCall):
            calls.append(_tool_call(block.id, block.name, block.arguments, tool_arguments_as_text))
        elif isinstance(block, ToolResult):
            results.append({"role": "tool", "tool_call_id": block.id, "name": block.name, "content": block.result})
        else:
            raise _Skip(f"{getattr(block, 'type', 'unknown')} blocks cannot go into a text training example")
    out = list(results)
    if texts or calls:
        entry: dict[str, Any] = {"role": role, "content": "".join(texts)}
        if calls:
            entry["tool_calls"] = calls
        out.append(entry)
    return out


def _tool_call(call_id: str, name: str, arguments: str, as_text: bool) -> dict:
    """OpenAI wants the arguments as a JSON string; Hugging Face chat templates want an object."""
    if as_text:
        value: Any = arguments
    else:
        try:
            value = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            raise _Skip("a tool call with arguments that are not JSON") from None
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": value}}


def answer_message(sample: StoredInference, output: Any, tool_arguments_as_text: bool) -> dict:
    """An output (chat blocks or `{"raw", "parsed"}`) as the assistant's message."""
    if output is None:
        raise _Skip("no output")
    if sample.type == "json":
        raw = output.get("raw") if isinstance(output, dict) else None
        if raw is None:
            raise _Skip("a JSON output with no raw text")
        return {"role": "assistant", "content": raw}
    texts, calls = [], []
    for block in output:
        kind = block.get("type")
        if kind == "text":
            texts.append(block["text"])
        elif kind == "tool_call":
            name = block.get("name") or block.get("raw_name")
            arguments = block.get("raw_arguments")
            if arguments is None:
                arguments = orjson.dumps(block.get("arguments") or {}).decode()
            calls.append(_tool_call(block.get("id", ""), name, arguments, tool_arguments_as_text))
        elif kind == "thought":
            continue
        else:
            raise _Skip(f"{kind} blocks cannot go into a text training example")
    if not texts and not calls:
        raise _Skip("an empty output")
    entry: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if calls:
        entry["tool_calls"] = calls
    return entry


class _Skip(Exception):
    """This sample cannot become an example; counted by reason, never silently dropped."""


class Curator:
    def __init__(self, config: Config, inferences: StoredInferenceQueries, datasets: DatasetService):
        self.config = config
        self.inferences = inferences
        self.datasets = datasets

    async def curate(self, request: CurationRequest) -> CuratedSet:
        function = self.config.function(request.function_name)
        if request.dataset_name is not None and request.template_variant_name is None:
            raise InvalidRequest("Datapoints were not made by a variant: set `template_variant_name` to render them")
        renderer = _Renderer(self.config, request.function_name, function, request.template_variant_name)
        samples = await self._samples(request)
        as_text = request.format.startswith("openai")
        skipped: Counter[str] = Counter()
        examples: list[tuple[str, dict]] = []
        if request.format.endswith("_sft"):
            for sample in samples:
                try:
                    examples.append((sample.inference_id, self._sft(renderer, sample, as_text)))
                except _Skip as reason:
                    skipped[str(reason)] += 1
        else:
            for key, prompt_sample, chosen, rejected in await self._pairs(request, renderer, samples, skipped):
                try:
                    examples.append((key, self._dpo(request, renderer, prompt_sample, chosen, rejected, as_text)))
                except _Skip as reason:
                    skipped[str(reason)] += 1
        train, validation = [], []
        held_out = validation_keys([str(key) for key, _ in examples], request.val_fraction, request.seed)
        for key, example in examples:
            (validation if str(key) in held_out else train).append(example)
        return CuratedSet(
            format=request.format,
            train=train,
            validation=validation,
            counts=CurationCounts(
                source_rows=len(samples),
                examples=len(examples),
                train=len(train),
                validation=len(validation),
                skipped=sum(skipped.values()),
            ),
            skipped_reasons=dict(skipped),
        )

    async def _samples(self, request: CurationRequest) -> list[StoredInference]:
        if request.dataset_name is None:
            output_source = request.output_source
            if request.format.endswith("_dpo") and request.pairs_from == "demonstration":
                output_source = "demonstration"
            prefer = request.prefer_demonstrations and output_source == "inference"
            query = ListInferencesRequest(
                function_name=request.function_name,
                variant_name=request.variant_name,
                output_source=output_source,
                filters=request.filters,
                order_by=request.order_by,
                limit=request.limit,
                offset=request.offset,
            )
            samples = await self.inferences.list(query)
            if prefer and samples:
                demonstrated = await self.inferences.get(
                    GetInferencesRequest(ids=[s.inference_id for s in samples], output_source="demonstration")
                )
                better = {d.inference_id: d.output for d in demonstrated}
                for sample in samples:
                    if sample.inference_id in better:
                        sample.output = better[sample.inference_id]
            return samples
        if request.format.endswith("_dpo"):
            raise InvalidRequest("Preference pairs come from inferences and their feedback, not from a dataset")
        points = await self.datasets.list(
            request.dataset_name,
            ListDatapointsRequest(function_name=request.function_name, limit=request.limit, offset=request.offset),
        )
        return [
            StoredInference(
                type=p.type,
                function_name=p.function_name,
                variant_name="",
                input=p.input,
                output=p.output,
                timestamp=p.updated_at,
                episode_id=p.episode_id or str(uuid.UUID(int=0)),
                inference_id=p.id,
                tags=p.tags,
                additional_tools=p.additional_tools,
                allowed_tools=p.allowed_tools,
                tool_choice=p.tool_choice,
                parallel_tool_calls=p.parallel_tool_calls,
                output_schema=p.output_schema,
            )
            for p in points
        ]

    @staticmethod
    def _sft(renderer: _Renderer, sample: StoredInference, as_text: bool) -> dict:
        messages, tools = _render(renderer, sample, as_text)
        example: dict[str, Any] = {"messages": [*messages, answer_message(sample, sample.output, as_text)]}
        if tools:
            example["tools"] = tools
        return example

    @staticmethod
    def _dpo(request, renderer, sample: StoredInference, chosen: Any, rejected: Any, as_text: bool) -> dict:
        messages, tools = _render(renderer, sample, as_text)
        good = answer_message(sample, chosen, as_text)
        bad = answer_message(sample, rejected, as_text)
        if good == bad:
            raise _Skip("the preferred and the rejected output are the same")
        if request.format == "openai_dpo":
            prompt: dict[str, Any] = {"messages": messages}
            if tools:
                prompt["tools"] = tools
            return {"input": prompt, "preferred_output": [good], "non_preferred_output": [bad]}
        example = {"prompt": messages, "chosen": [good], "rejected": [bad]}
        if tools:
            example["tools"] = tools
        return example

    async def _pairs(self, request: CurationRequest, renderer, samples, skipped: Counter) -> list[tuple]:
        if request.pairs_from == "demonstration":
            return [(s.inference_id, s, s.output, s.dispreferred_outputs[0]) for s in samples]
        values = await self._metric_values(request.pair_metric, samples)
        optimize_max = self.config.metrics[request.pair_metric].optimize == "max"
        groups: dict[bytes, list[tuple[float, StoredInference]]] = {}
        for sample in samples:
            value = values.get(sample.inference_id)
            if value is None:
                skipped["no feedback for the pairing metric"] += 1
                continue
            try:
                key = orjson.dumps(_render(renderer, sample, True), option=orjson.OPT_SORT_KEYS)
            except _Skip as reason:
                skipped[str(reason)] += 1
                continue
            groups.setdefault(key, []).append((value if optimize_max else -value, sample))
        pairs = []
        for members in groups.values():
            members.sort(key=lambda item: (item[0], item[1].inference_id))
            (low, worst), (high, best) = members[0], members[-1]
            if high > low:
                pairs.append((best.inference_id, best, best.output, worst.output))
            else:
                skipped["no better and worse output for the same prompt"] += len(members)
        return pairs

    async def _metric_values(self, metric_name: str, samples: list[StoredInference]) -> dict[str, float]:
        metric = self.config.metrics.get(metric_name)
        if metric is None:
            raise InvalidRequest(f"Unknown metric: `{metric_name}` is not in the config's [metrics]")
        if not samples:
            return {}
        table = "BooleanMetricFeedback" if metric.type == "boolean" else "FloatMetricFeedback"
        by_target: dict[str, list[str]] = {}
        for s in samples:
            target = s.inference_id if metric.level == "inference" else s.episode_id
            by_target.setdefault(target, []).append(s.inference_id)
        rows = await read(
            self.inferences.store,
            f"SELECT toString(target_id) AS target, toFloat64(argMax(value, toUInt128(id))) AS value FROM {table} "
            "WHERE metric_name = {metric:String} AND target_id IN {targets:Array(UUID)} GROUP BY target_id",
            {"metric": metric_name, "targets": [uuid.UUID(t) for t in by_target]},
        )
        values: dict[str, float] = {}
        for row in rows:
            for inference_id in by_target.get(row["target"], []):
                values[inference_id] = float(row["value"])
        return values


def _render(renderer: _Renderer, sample: StoredInference, as_text: bool) -> tuple[list[dict], list[dict]]:
    try:
        return renderer.prompt(sample, tool_arguments_as_text=as_text)
    except TensorZeroError as exc:
        raise _Skip(f"the input does not render: {exc.message}") from None
