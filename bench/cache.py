"""A cache hit's latency against a direct call to the model, in one run: a mock OpenAI server
that answers after `--delay-ms` (a model's time), called directly through the model client,
then through the in-process gateway with the cache on, first missing (each input new) and then
hitting (the same input again). Observability on chDB, as `tzray up` runs it.

    .venv/bin/python bench/cache.py [--requests 200] [--delay-ms 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

from tensorzero_ray.api.gateway import create_app
from tensorzero_ray.config import load_config
from tensorzero_ray.functions.routers import LocalRouters
from tensorzero_ray.inference.model import ModelRegistry, RequestExtras
from tensorzero_ray.store.observability import ObservabilityClient, ObservabilityWriter, StorageSettings
from tensorzero_ray.types import Text
from tensorzero_ray.types.model import ModelInferenceRequest, RequestMessage

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mock_provider import MockProtocol, completion_body, stream_events  # noqa: E402
from run import free_port  # noqa: E402
from stack import MOCK_FUNCTION  # noqa: E402

CONFIG = MOCK_FUNCTION


def p50(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--delay-ms", type=float, default=300.0)
    args = parser.parse_args()
    port = free_port()
    server = await asyncio.get_running_loop().create_server(
        lambda: MockProtocol(args.delay_ms / 1000, completion_body(64), stream_events(8)), "127.0.0.1", port
    )
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "tensorzero.toml").write_text(textwrap.dedent(CONFIG).replace("{port}", str(port)))
        config = load_config(str(Path(folder) / "tensorzero.toml"))
        storage = StorageSettings(
            dsn=f"chdb://{folder}/clickhouse", spool_path=f"{folder}/spool/w.jsonl", required=True
        )
        writer = ObservabilityWriter(storage)
        await writer.start()
        observability = ObservabilityClient(storage, writer)

        model = ModelRegistry(config.models).get("slow")
        direct = []
        for n in range(args.requests):
            request = ModelInferenceRequest(messages=[RequestMessage(role="user", content=[Text(text=f"q{n}")])])
            started = time.perf_counter()
            await model.infer(request, RequestExtras())
            direct.append(time.perf_counter() - started)

        misses, hits, stored_hits = [], [], []
        for replica in ("first", "second"):
            routers = LocalRouters(config, observability)
            app = create_app(config, routers, observability)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as http:
                if replica == "first":
                    for n in range(args.requests):
                        misses.append(await ask(http, f"question {n}"))
                    await observability.flush()
                    for n in range(args.requests):
                        hits.append(await ask(http, f"question {n}"))
                else:  # a replica that never saw these answers reads them from ClickHouse
                    for n in range(args.requests):
                        stored_hits.append(await ask(http, f"question {n}"))
            await routers.aclose()
        await writer.close()
    server.close()

    print(f"{args.requests} requests each; the mock model answers in {args.delay_ms:.0f} ms")
    print(f"  direct model call:     p50 {p50(direct):8.2f} ms")
    print(f"  gateway, cache miss:   p50 {p50(misses):8.2f} ms ({p50(misses) / p50(direct):.2f}x direct)")
    print(f"  gateway, cache hit:    p50 {p50(hits):8.2f} ms ({p50(hits) / p50(direct):.3f}x direct, replica memory)")
    print(
        f"  another replica's hit: p50 {p50(stored_hits):8.2f} ms "
        f"({p50(stored_hits) / p50(direct):.3f}x direct, read from ClickHouse)"
    )


async def ask(http: httpx.AsyncClient, text: str) -> float:
    body = {
        "function_name": "ask",
        "input": {"messages": [{"role": "user", "content": text}]},
        "cache_options": {"enabled": "on"},
    }
    started = time.perf_counter()
    answer = await http.post("/inference", json=body)
    assert answer.status_code == 200, answer.text
    return time.perf_counter() - started


if __name__ == "__main__":
    asyncio.run(main())
