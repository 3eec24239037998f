"""Checks a feedback request against the config and the stored target, and records one row
(spec §1.3, §3.10). Nothing is stored for a request that is rejected."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson

from tensorzero_ray import ray_metrics, telemetry
from tensorzero_ray.auth.request_key import stamp
from tensorzero_ray.config import Config
from tensorzero_ray.config.functions import ChatFunctionConfig, JsonFunctionConfig
from tensorzero_ray.errors import InvalidRequest, TensorZeroError, UnknownName
from tensorzero_ray.evaluations.human_feedback import (
    DATAPOINT_TAG,
    EVALUATOR_INFERENCE_TAG,
    NO_INFERENCE,
    canonical_output,
    is_human_feedback,
)
from tensorzero_ray.ids import uuid7, uuid7_timestamp_ms
from tensorzero_ray.inference.tools import ToolCatalog
from tensorzero_ray.inference.written_outputs import chat_output_blocks, json_output_value
from tensorzero_ray.store.observability import ObservabilityClient, WriterUnreachable
from tensorzero_ray.store.rows import (
    BooleanMetricFeedbackRow,
    CommentFeedbackRow,
    DemonstrationFeedbackRow,
    EvaluationHumanFeedbackRow,
    FloatMetricFeedbackRow,
    Row,
)
from tensorzero_ray.types.feedback import FeedbackRequest
from tensorzero_ray.types.model import ToolDefinition, ToolSettings
from tensorzero_ray.validation import check_tags

VISIBILITY_WAIT_S = 6.0
POLL_INTERVAL_S = 0.02
# While the writer is away: how long to wait for it, and how long after it answers again for
# other replicas to deliver what they acknowledged meanwhile.
OUTAGE_WAIT_S = 30.0
CATCH_UP_S = 6.0


class UnknownMetric(UnknownName):
    kind, what = "UnknownMetric", "metric"


def _parse_id(value: str, kind: str) -> uuid.UUID:
    try:
        parsed = uuid.UUID(value)
    except ValueError as exc:
        raise InvalidRequest(f"Invalid {kind} ID: {exc}") from None
    if parsed.version != 7:
        raise InvalidRequest(f"Invalid {kind} ID: Version must be 7, found {parsed.version}")
    return parsed


class FeedbackService:
    def __init__(self, config: Config, observability: ObservabilityClient | None):
        self.config = config
        self.observability = observability
        self.tools = ToolCatalog(config.tools)

    async def submit(self, request: FeedbackRequest) -> uuid.UUID:
        attributes = {"metric_name": request.metric_name}
        target = request.inference_id or request.episode_id
        if target is not None:
            attributes["inference_id" if request.inference_id is not None else "episode_id"] = str(target)
        with telemetry.tracer().start_as_current_span("feedback", attributes=attributes):
            feedback_id = await self._submit(request)
        ray_metrics.record_feedback(request.metric_name)
        return feedback_id

    async def _submit(self, request: FeedbackRequest) -> uuid.UUID:
        if self.observability is None:
            raise InvalidRequest(
                "Feedback needs observability, which is disabled (gateway.observability.enabled = false)"
            )
        check_tags(request.tags, request.internal)
        stamp(request.tags)
        level, kind = self._metric(request.metric_name)
        if request.inference_id is not None and request.episode_id is not None:
            raise InvalidRequest("Both episode_id and inference_id cannot be provided")
        if request.inference_id is None and request.episode_id is None:
            raise InvalidRequest("Exactly one of inference_id or episode_id is required")
        target_level = "inference" if request.inference_id is not None else "episode"
        if level is not None and level != target_level:
            raise InvalidRequest(f'Correct ID was not provided for feedback level "{level}".')
        raw_target = request.inference_id if request.inference_id is not None else request.episode_id
        target = _parse_id(raw_target, target_level.capitalize())
        self._check_value_type(request.metric_name, kind, request.value)
        found = await self._find_target(target, target_level)
        feedback_id = uuid7()
        rows = [await self._row(request, kind, feedback_id, target, target_level, found)]
        if kind in ("boolean", "float") and target_level == "inference" and is_human_feedback(request.tags):
            rows.append(await self._human_score(request, feedback_id, target, found))
        if not request.dryrun:
            await self.observability.record(rows)
        return feedback_id

    async def _human_score(self, request: FeedbackRequest, feedback_id: uuid.UUID, target: uuid.UUID, found) -> Row:
        """A person's score of an evaluated output, kept for later runs to reuse (spec §7.3)."""
        try:
            datapoint_id = uuid.UUID(request.tags[DATAPOINT_TAG])
            judge_inference = uuid.UUID(request.tags.get(EVALUATOR_INFERENCE_TAG) or NO_INFERENCE)
        except ValueError:
            raise InvalidRequest(
                f"`{DATAPOINT_TAG}` and `{EVALUATOR_INFERENCE_TAG}` tags must be UUIDs on human feedback"
            ) from None
        table = "JsonInference" if (found or {}).get("function_type") == "json" else "ChatInference"
        stored = await self.observability.query(
            f"SELECT output FROM {table} WHERE id = {{id:UUID}} LIMIT 1", {"id": target}
        )
        if not stored:
            raise InvalidRequest(f"Inference ID: {target} has no stored output to attach human feedback to yet")
        return EvaluationHumanFeedbackRow(
            metric_name=request.metric_name,
            datapoint_id=datapoint_id,
            output=canonical_output(stored[0]["output"]),
            value=orjson.dumps(request.value).decode(),
            feedback_id=feedback_id,
            evaluator_inference_id=judge_inference,
        )

    def _metric(self, name: str) -> tuple[str | None, str]:
        """(required level or None for either, value kind)."""
        if name == "comment":
            return None, "comment"
        if name == "demonstration":
            return "inference", "demonstration"
        metric = self.config.metrics.get(name)
        if metric is None:
            raise UnknownMetric(name)
        return metric.level, metric.type

    @staticmethod
    def _check_value_type(name: str, kind: str, value: Any) -> None:
        if kind == "boolean" and not isinstance(value, bool):
            raise InvalidRequest(
                f"Feedback value for metric `{name}` must be a boolean, got {orjson.dumps(value).decode()}"
            )
        if kind == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InvalidRequest(
                f"Feedback value for metric `{name}` must be a number, got {orjson.dumps(value).decode()}"
            )
        if kind == "comment" and not isinstance(value, str):
            raise InvalidRequest("Feedback value for `comment` must be a string")

    async def _find_target(self, target: uuid.UUID, level: str) -> dict | None:
        """An inference acknowledged moments ago is known from memory: by the replica that
        served it at once, by the writer as soon as it is delivered there (milliseconds).
        Older ones are in the database. Only an id minted moments ago is waited for."""
        if self.config.gateway.unstable_disable_feedback_target_validation:
            return None
        if level == "inference":
            sql = (
                "SELECT function_name, variant_name, function_type FROM InferenceById "
                "WHERE id_uint = toUInt128({id:UUID}) LIMIT 1"
            )
        else:
            sql = (
                "SELECT function_name, variant_name, function_type FROM InferenceByEpisodeId "
                "WHERE episode_id_uint = toUInt128({id:UUID}) LIMIT 1"
            )
        age_s = time.time() - uuid7_timestamp_ms(target) / 1000
        started = time.monotonic()
        deadline = started + min(max(VISIBILITY_WAIT_S - age_s, 0.0), VISIBILITY_WAIT_S)
        while True:
            try:
                recent, writer_up_s = await self.observability.find_recent(str(target), level)
                if recent is not None:
                    return recent
                if writer_up_s < CATCH_UP_S:
                    # A writer that just started: replicas are still delivering to it.
                    deadline = max(deadline, time.monotonic() + CATCH_UP_S - writer_up_s)
                rows = await self.observability.query(sql, {"id": target})
            except WriterUnreachable:
                # The writer is restarting: replicas deliver what they acknowledged once it
                # is back, so wait for it (bounded) instead of refusing.
                if time.monotonic() - started > OUTAGE_WAIT_S:
                    raise
                deadline = max(deadline, time.monotonic() + CATCH_UP_S)
                await asyncio.sleep(POLL_INTERVAL_S)
                continue
            except Exception as exc:  # noqa: BLE001 - the database is down: say so, store nothing
                raise TensorZeroError(f"ClickHouse is unavailable: {exc}", 503) from None
            if rows:
                return rows[0]
            if time.monotonic() >= deadline:
                raise InvalidRequest(f"{level.capitalize()} ID: {target} does not exist")
            await asyncio.sleep(POLL_INTERVAL_S)

    async def _row(
        self,
        request: FeedbackRequest,
        kind: str,
        feedback_id: uuid.UUID,
        target: uuid.UUID,
        level: str,
        found: dict | None,
    ) -> Row:
        common = {"id": feedback_id, "tags": request.tags}
        if kind == "boolean":
            return BooleanMetricFeedbackRow(
                target_id=target, metric_name=request.metric_name, value=request.value, **common
            )
        if kind == "float":
            return FloatMetricFeedbackRow(
                target_id=target, metric_name=request.metric_name, value=float(request.value), **common
            )
        if kind == "comment":
            return CommentFeedbackRow(target_id=target, target_type=level, value=request.value, **common)
        value = await self._demonstration(request.value, target, found)
        return DemonstrationFeedbackRow(inference_id=target, value=value, **common)

    async def _demonstration(self, value: Any, target: uuid.UUID, found: dict | None) -> str:
        if found is None:
            raise InvalidRequest("Demonstrations need the target inference, and target validation is disabled")
        function = self.config.functions.get(found["function_name"])
        if function is None and found["function_name"] != "tensorzero::default":
            raise InvalidRequest(f"Unknown function for demonstration: {found['function_name']}")
        stored = found if "output_schema" in found else await self._stored_settings(target, function)
        if isinstance(function, JsonFunctionConfig):
            schema = orjson.loads(stored["output_schema"]) if stored else function.output_schema_dict()
            return orjson.dumps(json_output_value(value, schema, "Demonstration")).decode()
        tools = self._tools_at_inference(stored, function)
        return orjson.dumps(chat_output_blocks(value, tools, "Demonstration")).decode()

    async def _stored_settings(self, target: uuid.UUID, function) -> dict | None:
        """The output schema or tools an older inference ran with, from the database."""
        if isinstance(function, JsonFunctionConfig):
            sql = "SELECT output_schema FROM JsonInference WHERE id = {id:UUID} LIMIT 1"
        else:
            sql = "SELECT dynamic_tools, allowed_tools FROM ChatInference WHERE id = {id:UUID} LIMIT 1"
        rows = await self.observability.query(sql, {"id": target})
        return rows[0] if rows else None

    def _tools_at_inference(self, stored: dict | None, function: ChatFunctionConfig | None) -> ToolSettings:
        keys = list(function.tools) if function is not None else []
        if stored and stored["allowed_tools"]:
            keys = orjson.loads(stored["allowed_tools"])
        tools = [self.tools.definitions[k] for k in keys if k in self.tools.definitions]
        for raw in stored["dynamic_tools"] if stored else []:
            tools.append(ToolDefinition(**orjson.loads(raw)))
        return ToolSettings(tools=tools)
