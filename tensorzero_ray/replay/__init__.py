"""Replaying stored inferences on another variant or model."""

from tensorzero_ray.replay.replayer import Replayer

__all__ = ["Replayer"]
