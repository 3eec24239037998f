"""Datasets of datapoints (spec §1.6, §4.5): create, update, list, get, delete and build from
stored inferences. Every datapoint a caller writes is checked against its function (input
schemas, tools, output schema) before anything is stored; writes are inserted at once, so a
datapoint can be read back as soon as its id is returned."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from pydantic import ValidationError

from tensorzero_ray.config import Config
from tensorzero_ray.config.functions import DEFAULT_FUNCTION, JsonFunctionConfig
from tensorzero_ray.datasets.inferences import StoredInferenceQueries
from tensorzero_ray.datasets.store_access import StoreAccess, read, write
from tensorzero_ray.errors import InvalidRequest, NotFound
from tensorzero_ray.ids import uuid7
from tensorzero_ray.inference.input import InputValidator
from tensorzero_ray.inference.tools import ToolCatalog
from tensorzero_ray.inference.written_outputs import chat_output_blocks, json_output_from_raw
from tensorzero_ray.store.datapoint_queries import (
    CHAT_COLUMNS,
    DATASET_EXISTS_SQL,
    DATASETS_SQL,
    JSON_COLUMNS,
    datapoint,
    datapoints_by_id_sql,
    list_datapoints_sql,
    live_datapoints_sql,
    now_string,
)
from tensorzero_ray.store.inference_rows import store_input
from tensorzero_ray.store.rows import ChatInferenceDatapointRow, JsonInferenceDatapointRow, Row
from tensorzero_ray.types.datasets import (
    CreateDatapoint,
    Datapoint,
    DatasetList,
    DatasetSummary,
    FromInferenceIds,
    FromInferenceQuery,
    ListDatapointsRequest,
    UpdateMetadataRequest,
)
from tensorzero_ray.types.inference import stored_tool
from tensorzero_ray.types.stored import GetInferencesRequest, ListInferencesRequest, StoredInference
from tensorzero_ray.validation import describe_errors


class UnknownDataset(NotFound):
    def __init__(self, name: str):
        super().__init__(f"Unknown dataset: {name}")


def check_dataset_name(name: str) -> None:
    if not name or name == "builder" or name.startswith("tensorzero::"):
        raise InvalidRequest(f"Invalid dataset name: `{name}` is reserved (`builder` and `tensorzero::*`)")


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


class DatasetService:
    def __init__(self, config: Config, store: StoreAccess | None, inferences: StoredInferenceQueries):
        self.config = config
        self.store = store
        self.inferences = inferences
        self.tools = ToolCatalog(config.tools)

    # --- writes ---------------------------------------------------------------------------------

    async def create(self, dataset: str, datapoints: list[CreateDatapoint], *, is_custom: bool = True) -> list[str]:
        check_dataset_name(dataset)
        rows = [self._row(dataset, dp, uuid7(), f"datapoints[{i}]", is_custom) for i, dp in enumerate(datapoints)]
        await self._insert(rows)
        return [str(row.id) for row in rows]

    async def update(self, dataset: str, changes: list[dict[str, Any]]) -> list[str]:
        """New versions under new ids; the old rows are staled (spec §1.6)."""
        check_dataset_name(dataset)
        ids = [self._change_id(change, i) for i, change in enumerate(changes)]
        current = await self._live_rows(dataset, ids)
        now = now_string()
        new_rows: list[Row] = []
        for index, (change, old) in enumerate(zip(changes, current)):
            merged = self._as_create(old)
            merged.update({key: value for key, value in change.items() if key != "id"})
            try:
                request = CreateDatapoint.model_validate(merged)
            except ValidationError as exc:
                raise InvalidRequest(f"datapoints[{index}]: {describe_errors(exc, merged)}") from None
            row = self._row(dataset, request, uuid7(), f"datapoints[{index}]", True)
            row.source_inference_id = old.source_inference_id
            new_rows.append(row)
        staled = [old.model_copy(update={"staled_at": now, "updated_at": now}) for old in current]
        await self._insert([*staled, *new_rows])
        return [str(row.id) for row in new_rows]

    async def update_metadata(self, dataset: str, request: UpdateMetadataRequest) -> list[str]:
        check_dataset_name(dataset)
        ids = [entry.id for entry in request.datapoints]
        current = await self._live_rows(dataset, ids)
        now = now_string()
        await self._insert(
            [old.model_copy(update={"name": e.name, "updated_at": now}) for old, e in zip(current, request.datapoints)]
        )
        return ids

    async def delete(self, dataset: str, ids: list[str]) -> int:
        check_dataset_name(dataset)
        current = await self._live_rows(dataset, ids)
        now = now_string()
        await self._insert([old.model_copy(update={"staled_at": now, "updated_at": now}) for old in current])
        return len(current)

    async def delete_dataset(self, dataset: str) -> int:
        check_dataset_name(dataset)
        await self._require_dataset(dataset)
        sql, params = live_datapoints_sql(dataset)
        current = [self._stored_row(row) for row in await read(self.store, sql, params)]
        now = now_string()
        await self._insert([old.model_copy(update={"staled_at": now, "updated_at": now}) for old in current])
        return len(current)

    async def from_inferences(self, dataset: str, request: FromInferenceIds | FromInferenceQuery) -> list[str]:
        check_dataset_name(dataset)
        if isinstance(request, FromInferenceIds):
            found = await self.inferences.get(
                GetInferencesRequest(ids=request.inference_ids, output_source=request.output_source), require_all=True
            )
        else:
            query = ListInferencesRequest.model_validate(request.model_dump(exclude={"type"}))
            found = await self.inferences.list(query)
        rows = [self._row_from_inference(dataset, inference) for inference in found]
        await self._insert(rows)
        return [str(row.id) for row in rows]

    # --- reads ----------------------------------------------------------------------------------

    async def list(self, dataset: str, request: ListDatapointsRequest) -> list[Datapoint]:
        check_dataset_name(dataset)
        if request.function_name is not None:
            self.config.function(request.function_name)
        sql, params = list_datapoints_sql(self.config, dataset, request)
        rows = await read(self.store, sql, params)
        if not rows and request.offset == 0:
            await self._require_dataset(dataset)
        return [datapoint(row) for row in rows]

    async def get(self, ids: list[str], dataset: str | None = None) -> list[Datapoint]:
        """The datapoints found, in the order asked, stale versions included; unknown ids are
        left out (as TensorZero answers: 200 and what exists)."""
        if dataset is not None:
            check_dataset_name(dataset)
        if not ids:
            return []
        sql, params = datapoints_by_id_sql(ids, dataset)
        found = [datapoint(row) for row in await read(self.store, sql, params)]
        order = {value: index for index, value in enumerate(ids)}
        return sorted(found, key=lambda d: order[d.id])

    async def get_one(self, datapoint_id: str, dataset: str | None = None) -> Datapoint:
        found = await self.get([datapoint_id], dataset)
        if not found:
            raise NotFound(f"Datapoints not found: {datapoint_id}")
        return found[0]

    async def datasets(self) -> DatasetList:
        rows = await read(self.store, DATASETS_SQL)
        return DatasetList(
            datasets=[
                DatasetSummary(
                    dataset_name=r["dataset_name"],
                    datapoint_count=int(r["datapoint_count"]),
                    last_updated=r["last_updated"].replace(" ", "T") + "Z",
                )
                for r in rows
            ]
        )

    # --- helpers --------------------------------------------------------------------------------

    def _row(self, dataset: str, dp: CreateDatapoint, new_id: uuid.UUID, where: str, is_custom: bool) -> Row:
        function = self.config.function(dp.function_name)
        kind = "json" if isinstance(function, JsonFunctionConfig) else "chat"
        if dp.type != kind:
            raise InvalidRequest(
                f"{where}: `type` is `{dp.type}` but function `{dp.function_name}` is a {kind} function"
            )
        InputValidator(function.schema_files()).validate(dp.input)
        common = dict(
            dataset_name=dataset,
            function_name=dp.function_name,
            id=new_id,
            episode_id=uuid.UUID(dp.episode_id) if dp.episode_id else None,
            input=_json(store_input(dp.input)),
            tags=dp.tags,
            updated_at=now_string(),
            is_custom=is_custom,
            name=dp.name,
        )
        if kind == "json":
            schema = dp.output_schema if dp.output_schema is not None else function.output_schema_dict()
            output = None
            if dp.output is not None:
                raw = dp.output.get("raw") if isinstance(dp.output, dict) else None
                if raw is not None or not isinstance(dp.output, dict):
                    output = _json(json_output_from_raw(raw, schema, f"{where}.output"))
            return JsonInferenceDatapointRow(output=output, output_schema=_json(schema), **common)
        settings = self.tools.settings(function if dp.function_name != DEFAULT_FUNCTION else None, dp)
        output = None
        if dp.output is not None:
            output = _json(chat_output_blocks(dp.output, settings, f"{where}.output"))
        return ChatInferenceDatapointRow(
            output=output,
            dynamic_tools=[_json(stored_tool(t)) for t in dp.additional_tools or []],
            dynamic_provider_tools=[_json(t) for t in dp.provider_tools or []],
            allowed_tools=_json(dp.allowed_tools) if dp.allowed_tools is not None else None,
            tool_choice=_json(dp.tool_choice if isinstance(dp.tool_choice, str) else dp.tool_choice.model_dump())
            if dp.tool_choice is not None
            else None,
            parallel_tool_calls=dp.parallel_tool_calls,
            **common,
        )

    def _row_from_inference(self, dataset: str, inference: StoredInference) -> Row:
        """Stored data is taken as it is: it was validated when the inference ran."""
        common = dict(
            dataset_name=dataset,
            function_name=inference.function_name,
            id=uuid7(),
            episode_id=uuid.UUID(inference.episode_id),
            input=_json(inference.input),
            output=_json(inference.output) if inference.output is not None else None,
            tags=inference.tags,
            updated_at=now_string(),
            source_inference_id=uuid.UUID(inference.inference_id),
            is_custom=False,
        )
        if inference.type == "json":
            return JsonInferenceDatapointRow(output_schema=_json(inference.output_schema or {}), **common)
        return ChatInferenceDatapointRow(
            dynamic_tools=[_json(t) for t in inference.additional_tools or []],
            allowed_tools=_json(inference.allowed_tools) if inference.allowed_tools is not None else None,
            tool_choice=_json(inference.tool_choice) if inference.tool_choice is not None else None,
            parallel_tool_calls=inference.parallel_tool_calls,
            **common,
        )

    @staticmethod
    def _change_id(change: Any, index: int) -> str:
        if not isinstance(change, dict) or not isinstance(change.get("id"), str):
            raise InvalidRequest(f"datapoints[{index}]: `id` is required")
        try:
            return str(uuid.UUID(change["id"]))
        except ValueError:
            raise InvalidRequest(f"datapoints[{index}]: `id` is not a UUID") from None

    async def _live_rows(self, dataset: str, ids: list[str]) -> list[Row]:
        """The current rows of these datapoints, in the order asked; stale or unknown is a 404."""
        sql, params = datapoints_by_id_sql(ids, dataset)
        rows = {r["id"]: r for r in await read(self.store, sql, params) if r["staled_at"] is None}
        missing = [i for i in ids if i not in rows]
        if missing:
            raise NotFound(f"Datapoints not found in dataset `{dataset}`: {', '.join(missing)}")
        return [self._stored_row(rows[i]) for i in ids]

    @staticmethod
    def _stored_row(raw: dict[str, Any]) -> Row:
        if raw["type"] == "json":
            return JsonInferenceDatapointRow(**{k: raw[k] for k in JSON_COLUMNS})
        return ChatInferenceDatapointRow(**{k: raw[k] for k in CHAT_COLUMNS})

    @staticmethod
    def _as_create(row: Row) -> dict[str, Any]:
        """A stored row as the CreateDatapoint fields it came from, for merging an update."""
        fields: dict[str, Any] = {
            "type": "json" if isinstance(row, JsonInferenceDatapointRow) else "chat",
            "function_name": row.function_name,
            "input": orjson.loads(row.input),
            "episode_id": str(row.episode_id) if row.episode_id else None,
            "tags": row.tags,
            "name": row.name,
        }
        output = orjson.loads(row.output) if row.output else None
        if isinstance(row, JsonInferenceDatapointRow):
            fields["output"] = {"raw": output["raw"]} if output else None
            fields["output_schema"] = orjson.loads(row.output_schema)
        else:
            fields["output"] = output
            fields["additional_tools"] = [orjson.loads(t) for t in row.dynamic_tools] or None
            fields["allowed_tools"] = orjson.loads(row.allowed_tools) if row.allowed_tools else None
            fields["tool_choice"] = orjson.loads(row.tool_choice) if row.tool_choice else None
            fields["parallel_tool_calls"] = row.parallel_tool_calls
        return fields

    async def _require_dataset(self, dataset: str) -> None:
        rows = await read(self.store, DATASET_EXISTS_SQL, {"dataset": dataset})
        if not rows or int(rows[0]["n"]) == 0:
            raise UnknownDataset(dataset)

    async def _insert(self, rows: list[Row]) -> None:
        by_table: dict[str, list[dict]] = {}
        for row in rows:
            by_table.setdefault(row.table, []).append(row.record())
        for table, records in by_table.items():
            await write(self.store, table, records)
