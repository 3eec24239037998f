"""A `tzray up` stack over the fast mock provider, for the benchmarks that time Ray jobs
against it: the mock answering after `delay_ms`, the stack in a fresh folder, both stopped
afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from run import free_port

ROOT = Path(__file__).resolve().parent.parent
# The model `slow`: the mock, through the OpenAI provider; `{port}` is filled in by `stack_on_mock`.
MOCK_MODEL = """
[models.slow]
routing = ["mock"]
[models.slow.providers.mock]
type = "openai"
model_name = "bench"
api_base = "http://127.0.0.1:{port}/v1/"
api_key_location = "none"
"""
# A chat function `ask` with one variant, `only`, on that model.
MOCK_FUNCTION = (
    MOCK_MODEL
    + """
[functions.ask]
type = "chat"
[functions.ask.variants.only]
type = "chat_completion"
model = "slow"
"""
)


@contextmanager
def stack_on_mock(
    config: str, *, delay_ms: float, tokens: int, prefix: str, files: dict[str, str] | None = None
) -> Iterator[tuple[str, Path]]:
    """(gateway URL, folder); `config` names the mock's port as `{port}`; `files` (name ->
    text) go beside it, for templates the config names."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    mock_port, port = free_port(), free_port()
    (workdir / "tensorzero.toml").write_text(config.format(port=mock_port))
    for name, text in (files or {}).items():
        (workdir / name).write_text(text)
    mock = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "mock_provider.py"), "--port", str(mock_port), "--delay-ms",
         str(delay_ms), "--tokens", str(tokens)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    up = [sys.executable, "-m", "tensorzero_ray.cli", "up", "--config", "tensorzero.toml", "--port", str(port)]
    try:
        subprocess.run(up, cwd=workdir, check=True, stdout=subprocess.DEVNULL, env=env)
        yield f"http://127.0.0.1:{port}", workdir
    finally:
        subprocess.run([sys.executable, "-m", "tensorzero_ray.cli", "down"], cwd=workdir, stdout=subprocess.DEVNULL)
        mock.terminate()
