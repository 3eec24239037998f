"""Stored data brought back out: inference queries, datasets, curation."""

from tensorzero_ray.datasets.curation import Curator
from tensorzero_ray.datasets.inferences import StoredInferenceQueries
from tensorzero_ray.datasets.service import DatasetService

__all__ = ["Curator", "DatasetService", "StoredInferenceQueries"]
