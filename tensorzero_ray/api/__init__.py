"""TensorZero's HTTP API as a plain ASGI app: request parsing, the native, OpenAI-compatible,
data and evaluation routes, error shaping and load shedding. No Ray import: Serve wraps it."""
