"""Tokens/s and time to first token of a self-hosted model: through the gateway (HTTP
`/inference`, streaming) versus the LocalModel deployment's Serve handle called directly, in
one run, on a tiny model built on the spot (see bench/README.md).

    .venv/bin/python bench/local_model.py --requests 20 --max-tokens 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import free_port  # noqa: E402

MESSAGES = [{"role": "user", "content": "Tell me about the weather in Paris."}]


def config_text(max_tokens: int) -> str:
    return textwrap.dedent(f"""
        [gateway]
        observability.enabled = true
        [models.tiny]
        routing = ["local"]
        [models.tiny.providers.local]
        type = "ray_serve"
        model_name = "./tiny"
        ray_actor_options = {{ num_cpus = 1 }}
        generation = {{ max_tokens = {max_tokens}, temperature = 0.0 }}
        [functions.chat]
        type = "chat"
        [functions.chat.variants.local]
        type = "chat_completion"
        model = "tiny"
        """)


async def through_gateway(url: str) -> tuple[float, float, int]:
    """(time to first token, total seconds, output tokens) of one streamed /inference."""
    body = {"function_name": "chat", "input": {"messages": MESSAGES}, "stream": True}
    started = time.perf_counter()
    first = None
    tokens = 0
    async with httpx.AsyncClient(timeout=300) as client:
        async with client.stream("POST", f"{url}/inference", json=body) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = orjson.loads(line[6:])
                if chunk.get("content") and first is None:
                    first = time.perf_counter() - started
                if chunk.get("usage"):
                    tokens = chunk["usage"]["output_tokens"]
    return first or 0.0, time.perf_counter() - started, tokens


async def through_handle(handle, max_tokens: int) -> tuple[float, float, int]:
    payload = {"messages": MESSAGES, "max_tokens": max_tokens, "temperature": 0.0}
    started = time.perf_counter()
    first = None
    tokens = 0
    async for delta in handle.options(stream=True).generate_stream.remote(payload):
        if delta.get("text") and first is None:
            first = time.perf_counter() - started
        if "output_tokens" in delta:
            tokens = delta["output_tokens"]
    return first or 0.0, time.perf_counter() - started, tokens


def summarize(name: str, samples: list[tuple[float, float, int]]) -> dict:
    tokens = sum(s[2] for s in samples)
    seconds = sum(s[1] for s in samples)
    return {
        "path": name,
        "requests": len(samples),
        "ttft_p50_ms": round(statistics.median(s[0] for s in samples) * 1000, 2),
        "tokens_per_s": round(tokens / seconds, 1),
        "output_tokens": tokens,
    }


async def measure(url: str, requests: int, max_tokens: int) -> list[dict]:
    from ray import serve

    handle = serve.get_deployment_handle("LocalModel-tiny-local", app_name="tensorzero")
    await through_handle(handle, max_tokens)
    await through_gateway(url)
    gateway, direct = [], []
    for _ in range(requests):  # alternate so drift hits both paths alike
        direct.append(await through_handle(handle, max_tokens))
        gateway.append(await through_gateway(url))
    return [summarize("LocalModel handle (direct)", direct), summarize("gateway /inference stream", gateway)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    from tensorzero_ray.local_models.tiny import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build_tiny_model(work / "tiny")
        (work / "tensorzero.toml").write_text(config_text(args.max_tokens))
        port = free_port()
        tzray = [sys.executable, "-m", "tensorzero_ray.cli"]
        subprocess.run([*tzray, "up", "--config", "tensorzero.toml", "--port", str(port)], cwd=work, check=True)
        try:
            import ray

            ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
            rows = asyncio.run(measure(f"http://127.0.0.1:{port}", args.requests, args.max_tokens))
        finally:
            subprocess.run([*tzray, "down"], cwd=work, check=False, stdout=subprocess.DEVNULL)
    direct, gateway = rows
    print(f"{'path':30} {'ttft p50 ms':>12} {'tokens/s':>10}")
    for row in rows:
        print(f"{row['path']:30} {row['ttft_p50_ms']:>12} {row['tokens_per_s']:>10}")
    print(
        f"gateway / direct: ttft +{gateway['ttft_p50_ms'] - direct['ttft_p50_ms']:.2f} ms, "
        f"tokens/s x{gateway['tokens_per_s'] / direct['tokens_per_s']:.2f}"
    )
    out = ROOT / "bench" / "results" / f"local-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"max_tokens": args.max_tokens, "rows": rows}, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
