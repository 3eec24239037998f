"""Python clients: over HTTP (sync and async) and, inside a Ray cluster, over Serve handles."""

from tensorzero_ray.client.common import GatewayError
from tensorzero_ray.client.http import AsyncTensorZeroRayClient, TensorZeroRayClient

__all__ = ["AsyncClusterClient", "AsyncTensorZeroRayClient", "ClusterClient", "GatewayError", "TensorZeroRayClient"]


def __getattr__(name: str):
    # The in-cluster clients import Ray Serve; only pay for it when asked.
    if name in ("ClusterClient", "AsyncClusterClient"):
        from tensorzero_ray.client import cluster

        return getattr(cluster, name)
    raise AttributeError(name)
