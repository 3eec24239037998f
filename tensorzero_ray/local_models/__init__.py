"""Self-hosted models: the wire shapes between the `ray_serve` provider and its `LocalModel`
deployment, the transformers engine, tool-call parsing, and a tiny model builder for tests
and offline demos. Nothing here imports torch until a model is loaded."""

from tensorzero_ray.local_models.protocol import GenerationDelta, GenerationRequest, GenerationResult

__all__ = ["GenerationDelta", "GenerationRequest", "GenerationResult"]
