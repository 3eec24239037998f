"""Workflow evaluations (spec §7.4): a run pins variants per function; its episodes carry ids
dated 10^10 s ahead, and every inference in such an episode is pinned and tagged by its run.

Runs and episodes are stored rows; the replica that made an episode knows it from memory, any
other replica looks it up once (and then remembers it)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

from pydantic import Field

from tensorzero_ray.config import Config
from tensorzero_ray.errors import InvalidRequest, NotFound, UnknownFunction, UnknownVariant
from tensorzero_ray.ids import is_workflow_episode, uuid7, workflow_episode_id
from tensorzero_ray.store.rows import WorkflowEvaluationEpisodeRow, WorkflowEvaluationRunRow
from tensorzero_ray.types import InferenceRequest
from tensorzero_ray.types.inference import NullMeansDefault
from tensorzero_ray.validation import check_tags

RUN_TAG = "tensorzero::workflow_evaluation_run_id"
LEGACY_RUN_TAG = "tensorzero::dynamic_evaluation_run_id"
REMEMBERED = 10_000
# An episode made on another replica may still be on its way to the database.
LOOKUP_WAIT_S = 2.0


class WorkflowRunRequest(NullMeansDefault):
    variants: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    project_name: str | None = None
    display_name: str | None = None
    internal: bool = False


class WorkflowEpisodeRequest(NullMeansDefault):
    task_name: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    internal: bool = False
    # Older clients name the task `datapoint_name`.
    datapoint_name: str | None = None


@dataclass
class Pins:
    run_id: str
    variant_pins: dict[str, str]
    tags: dict[str, str] = field(default_factory=dict)


class WorkflowEvaluations:
    def __init__(self, config: Config, observability):
        self.config = config
        self.observability = observability
        self._runs: OrderedDict[str, Pins] = OrderedDict()
        self._episodes: OrderedDict[uuid.UUID, Pins] = OrderedDict()

    async def create_run(self, request: WorkflowRunRequest) -> str:
        for function_name, variant_name in request.variants.items():
            function = self.config.functions.get(function_name)
            if function is None:
                raise UnknownFunction(function_name)
            if variant_name not in function.variants:
                raise UnknownVariant(variant_name)
        check_tags(request.tags, request.internal)
        run_id = uuid7()
        self._remember(self._runs, str(run_id), Pins(str(run_id), dict(request.variants), dict(request.tags)))
        await self._record(
            WorkflowEvaluationRunRow(
                run_id_uint=str(run_id.int),
                variant_pins=request.variants,
                tags=request.tags,
                project_name=request.project_name,
                run_display_name=request.display_name,
            )
        )
        return str(run_id)

    async def create_episode(self, run_id: str, request: WorkflowEpisodeRequest) -> str:
        try:
            run_uuid = uuid.UUID(run_id)
        except ValueError:
            raise InvalidRequest(f"Invalid workflow evaluation run id: `{run_id}`") from None
        check_tags(request.tags, request.internal)
        run = self._runs.get(str(run_uuid)) or await self._stored_run(run_uuid)
        if run is None:
            raise NotFound(f"Workflow evaluation run not found: {run_uuid}")
        episode_id = workflow_episode_id()
        tags = {**run.tags, **request.tags, RUN_TAG: run.run_id, LEGACY_RUN_TAG: run.run_id}
        self._remember(self._episodes, episode_id, Pins(run.run_id, run.variant_pins, tags))
        await self._record(
            WorkflowEvaluationEpisodeRow(
                run_id=run_uuid,
                episode_id_uint=str(episode_id.int),
                variant_pins=run.variant_pins,
                datapoint_name=request.task_name or request.datapoint_name,
                tags=tags,
            )
        )
        return str(episode_id)

    async def apply(self, function_name: str, request: InferenceRequest) -> None:
        """Pin and tag an inference in a workflow episode; an episode id dated that far ahead
        that no run made is the caller's mistake (TensorZero answers 400 too)."""
        if request.episode_id is None:
            return
        episode = uuid.UUID(request.episode_id)
        if not is_workflow_episode(episode):
            return
        pins = self._episodes.get(episode) or await self._stored_episode(episode)
        if pins is None:
            raise InvalidRequest(
                f"Invalid workflow evaluation episode: `{episode}` is dated 10^10 s ahead, but no workflow "
                "evaluation run created it (POST /workflow_evaluation_run/{run_id}/episode makes one)"
            )
        pinned = pins.variant_pins.get(function_name)
        if request.variant_name is None and pinned is not None:
            request.variant_name = pinned
        request.tags = {**pins.tags, **request.tags}

    async def _stored_run(self, run_id: uuid.UUID) -> Pins | None:
        rows = await self._lookup(
            "SELECT variant_pins, tags FROM DynamicEvaluationRun FINAL WHERE run_id_uint = toUInt128({r:UUID}) LIMIT 1",
            {"r": run_id},
        )
        if not rows:
            return None
        pins = Pins(str(run_id), dict(rows[0]["variant_pins"]), dict(rows[0]["tags"]))
        self._remember(self._runs, str(run_id), pins)
        return pins

    async def _stored_episode(self, episode: uuid.UUID) -> Pins | None:
        rows = await self._lookup(
            "SELECT toString(run_id) AS run_id, variant_pins, tags FROM DynamicEvaluationRunEpisode FINAL "
            "WHERE episode_id_uint = toUInt128({e:UUID}) LIMIT 1",
            {"e": episode},
        )
        if not rows:
            return None
        pins = Pins(rows[0]["run_id"], dict(rows[0]["variant_pins"]), dict(rows[0]["tags"]))
        self._remember(self._episodes, episode, pins)
        return pins

    async def _lookup(self, sql: str, parameters: dict) -> list[dict]:
        if self.observability is None:
            return []
        deadline = time.monotonic() + LOOKUP_WAIT_S
        while True:
            rows = await self.observability.query(sql, parameters)
            if rows or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.05)

    async def _record(self, row) -> None:
        if self.observability is not None:
            await self.observability.record([row])

    @staticmethod
    def _remember(cache: OrderedDict, key, value) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > REMEMBERED:
            cache.popitem(last=False)
