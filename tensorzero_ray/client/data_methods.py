"""The JSON methods every HTTP client has: stored inferences, datasets, curation, replay,
workflow evaluations and batch inference. Each method says what to send and how to read the answer; the sync client sends at
once, the async client returns an awaitable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from tensorzero_ray.client.common import body
from tensorzero_ray.types.batch import BatchStarted, BatchStatus
from tensorzero_ray.types.curation import CuratedSet
from tensorzero_ray.types.datasets import Datapoint, DatasetSummary
from tensorzero_ray.types.replay import ReplayResult
from tensorzero_ray.types.stored import StoredInference


def _inferences(data: dict) -> list[StoredInference]:
    return [StoredInference.model_validate(item) for item in data["inferences"]]


def _datapoints(data: dict) -> list[Datapoint]:
    return [Datapoint.model_validate(item) for item in data["datapoints"]]


def _dataset(name: str) -> str:
    return f"/v1/datasets/{quote(name, safe='')}"


class DataMethods:
    def _request(self, method: str, path: str, payload: dict | None, parse: Callable[[Any], Any]) -> Any:
        raise NotImplementedError

    def list_inferences(self, **fields: Any) -> list[StoredInference]:
        """Fields of POST /v1/inferences/list_inferences (function_name, filters, order_by, ...)."""
        return self._request("POST", "/v1/inferences/list_inferences", body(**fields), _inferences)

    def get_inferences(self, ids: list[str], **fields: Any) -> list[StoredInference]:
        return self._request("POST", "/v1/inferences/get_inferences", body(ids=ids, **fields), _inferences)

    def create_datapoints(self, dataset_name: str, datapoints: list[dict[str, Any]]) -> list[str]:
        payload = {"datapoints": datapoints}
        return self._request("POST", f"{_dataset(dataset_name)}/datapoints", payload, lambda d: d["ids"])

    def update_datapoints(self, dataset_name: str, datapoints: list[dict[str, Any]]) -> list[str]:
        payload = {"datapoints": datapoints}
        return self._request("PATCH", f"{_dataset(dataset_name)}/datapoints", payload, lambda d: d["ids"])

    def update_datapoints_metadata(self, dataset_name: str, datapoints: list[dict[str, Any]]) -> list[str]:
        payload = {"datapoints": datapoints}
        return self._request("PATCH", f"{_dataset(dataset_name)}/datapoints/metadata", payload, lambda d: d["ids"])

    def delete_datapoints(self, dataset_name: str, ids: list[str]) -> int:
        path = f"{_dataset(dataset_name)}/datapoints"
        return self._request("DELETE", path, {"ids": ids}, lambda d: d["num_deleted_datapoints"])

    def delete_dataset(self, dataset_name: str) -> int:
        return self._request("DELETE", _dataset(dataset_name), None, lambda d: d["num_deleted_datapoints"])

    def list_datapoints(self, dataset_name: str, **fields: Any) -> list[Datapoint]:
        return self._request("POST", f"{_dataset(dataset_name)}/list_datapoints", body(**fields), _datapoints)

    def get_datapoints(self, ids: list[str], dataset_name: str | None = None) -> list[Datapoint]:
        path = f"{_dataset(dataset_name)}/get_datapoints" if dataset_name else "/v1/datasets/get_datapoints"
        return self._request("POST", path, {"ids": ids}, _datapoints)

    def create_datapoints_from_inferences(
        self,
        dataset_name: str,
        *,
        inference_ids: list[str] | None = None,
        output_source: str = "inference",
        **query: Any,
    ) -> list[str]:
        """From `inference_ids`, or else from a list_inferences query given as keywords."""
        if inference_ids is not None:
            payload = {"type": "inference_ids", "inference_ids": inference_ids, "output_source": output_source}
        else:
            payload = body(type="inference_query", output_source=output_source, **query)
        return self._request("POST", f"{_dataset(dataset_name)}/from_inferences", payload, lambda d: d["ids"])

    def list_datasets(self) -> list[DatasetSummary]:
        return self._request(
            "GET", "/internal/datasets", None, lambda d: [DatasetSummary.model_validate(x) for x in d["datasets"]]
        )

    def curate(self, **fields: Any) -> CuratedSet:
        """Training examples (fields of CurationRequest); `.write_jsonl(dir)` saves them."""
        return self._request("POST", "/v1/curation/examples", body(**fields), CuratedSet.model_validate)

    def replay(self, **fields: Any) -> ReplayResult:
        """Stored inferences re-run on `variant_name` or `model_name`; a dry run by default."""
        return self._request("POST", "/v1/replay", body(**fields), ReplayResult.model_validate)

    def workflow_evaluation_run(
        self,
        *,
        variants: dict[str, str],
        tags: dict[str, str] | None = None,
        project_name: str | None = None,
        display_name: str | None = None,
    ) -> str:
        """A workflow-evaluation run pinning these variants (function -> variant); its run id."""
        payload = body(variants=variants, tags=tags, project_name=project_name, display_name=display_name)
        return self._request("POST", "/workflow_evaluation_run", payload, lambda d: d["run_id"])

    def workflow_evaluation_run_episode(
        self, *, run_id: str, task_name: str | None = None, tags: dict[str, str] | None = None
    ) -> str:
        """An episode of that run; inferences with its id are pinned and tagged by the run."""
        path = f"/workflow_evaluation_run/{quote(str(run_id), safe='')}/episode"
        return self._request("POST", path, body(task_name=task_name, tags=tags), lambda d: d["episode_id"])

    def start_batch_inference(self, *, function_name: str, inputs: list[dict[str, Any]], **fields: Any) -> BatchStarted:
        """Fields of POST /batch_inference: per-input arrays (episode_ids, tags, params, ...)."""
        payload = body(function_name=function_name, inputs=inputs, **fields)
        return self._request("POST", "/batch_inference", payload, BatchStarted.model_validate)

    def poll_batch_inference(self, batch_id: str, inference_id: str | None = None) -> BatchStatus:
        path = f"/batch_inference/{quote(str(batch_id), safe='')}"
        if inference_id is not None:
            path += f"/inference/{quote(str(inference_id), safe='')}"
        return self._request("GET", path, None, BatchStatus.model_validate)
