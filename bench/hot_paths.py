"""What the hot paths save inside a Gateway replica: the same requests through the gateway's
ASGI app with the hot paths and through FastAPI's router only, next to calling the mock
provider directly, in one run.

    .venv/bin/python bench/hot_paths.py [--requests 4000] [--concurrency 16]

The app runs in this process with in-process routers and observability on (the embedded
chDB writer in this process too), the fast mock (bench/mock_provider.py) as its model.
CPU is this process's: the gateway's code, the in-process client that calls it, and the
writer; the mock's is not counted. Prints CPU per request and the ratios."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import free_port  # noqa: E402
from stack import MOCK_FUNCTION  # noqa: E402

from tensorzero_ray.api.gateway import create_app  # noqa: E402
from tensorzero_ray.api.hot_paths import HotPaths  # noqa: E402
from tensorzero_ray.config import load_config  # noqa: E402
from tensorzero_ray.functions.routers import LocalRouters  # noqa: E402
from tensorzero_ray.store.observability import ObservabilityClient, ObservabilityWriter, StorageSettings  # noqa: E402

BODIES = {
    "/inference": {"function_name": "ask", "input": {"messages": [{"role": "user", "content": "Hello"}]}},
    "/openai/v1/chat/completions": {
        "model": "tensorzero::function_name::ask",
        "messages": [{"role": "user", "content": "Hello"}],
    },
}


async def timed(one, requests: int, concurrency: int) -> float:
    """CPU ms per request of `requests` calls, `concurrency` at a time, after a warm-up."""
    gate = asyncio.Semaphore(concurrency)

    async def gated() -> None:
        async with gate:
            await one()

    await asyncio.gather(*[gated() for _ in range(200)])
    started = time.process_time()
    await asyncio.gather(*[gated() for _ in range(requests)])
    return (time.process_time() - started) / requests * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hot-paths-"))
    port = free_port()
    (work / "tensorzero.toml").write_text(MOCK_FUNCTION.format(port=port))
    mock = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "mock_provider.py"), "--port", str(port), "--delay-ms", "0.2"],
        stdout=subprocess.DEVNULL,
    )
    config = load_config(str(work / "tensorzero.toml"))
    storage = StorageSettings(
        dsn=f"chdb://{work / 'clickhouse'}", spool_path=str(work / "spool" / "writes.jsonl"), required=True
    )
    writer = ObservabilityWriter(storage)
    await writer.start()
    observability = ObservabilityClient(storage, writer)
    apps = {}
    for label in ("hot paths", "router only"):
        apps[label] = create_app(config, LocalRouters(config, observability), observability)
    next(m for m in apps["router only"].user_middleware if m.cls is HotPaths).kwargs["handlers"].clear()
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            for _ in range(100):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/"):
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            body = orjson.dumps({"model": "bench", "messages": [{"role": "user", "content": "Hello"}]})

            async def direct() -> None:
                async with session.post(url, data=body, headers={"content-type": "application/json"}) as answer:
                    await answer.read()

            baseline = await timed(direct, args.requests, args.concurrency)
        print(f"{'endpoint':30s} {'path':12s} {'CPU ms/request':>15s} {'minus direct':>13s} {'vs router':>10s}")
        print(f"{'(mock, called directly)':30s} {'-':12s} {baseline:15.3f}")
        for path, payload in BODIES.items():
            cpu = {}
            # Alternate, so neither always runs first.
            for label in ("router only", "hot paths", "router only", "hot paths"):
                client = httpx.AsyncClient(transport=httpx.ASGITransport(app=apps[label]), base_url="http://gateway")

                async def through_gateway(client=client) -> None:
                    answer = await client.post(path, json=payload)
                    assert answer.status_code == 200, answer.text

                cpu.setdefault(label, []).append(await timed(through_gateway, args.requests, args.concurrency))
                await client.aclose()
            routed = min(cpu["router only"]) - baseline
            for label in ("router only", "hot paths"):
                best = min(cpu[label])
                print(f"{path:30s} {label:12s} {best:15.3f} {best - baseline:13.3f} {(best - baseline) / routed:9.2f}x")
    finally:
        await observability.close()
        await writer.close()
        mock.terminate()


if __name__ == "__main__":
    asyncio.run(main())
