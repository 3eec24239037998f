"""tensorzero-ray: a TensorZero-compatible LLM gateway and data flywheel on Ray."""

__version__ = "0.1.0"
