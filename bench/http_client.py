"""The provider HTTP client: httpx against aiohttp for the gateway's pooled, keep-alive calls
to a provider, in one run, on the fast mock (bench/mock_provider.py).

    .venv/bin/python bench/http_client.py [--requests 4000] [--concurrency 32]

Each client sends the same chat completion POSTs (and streams of 64 chunks, read line by
line as the gateway reads SSE) with the same concurrency over one pooled client; CPU is this
process's, so the mock's work is not counted. Prints CPU per request and the ratio."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import free_port  # noqa: E402

BODY = orjson.dumps({"model": "bench", "messages": [{"role": "user", "content": "Hello"}]})
STREAM_BODY = orjson.dumps({"model": "bench", "stream": True, "messages": [{"role": "user", "content": "Hello"}]})
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench"}


async def with_httpx(url: str, requests: int, concurrency: int, stream: bool) -> None:
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=httpx.Timeout(900, connect=30), limits=limits) as client:

        async def one() -> None:
            if stream:
                async with client.stream("POST", url, content=STREAM_BODY, headers=HEADERS) as response:
                    async for line in response.aiter_lines():
                        if line.startswith("data:"):
                            pass
            else:
                response = await client.post(url, content=BODY, headers=HEADERS)
                orjson.loads(response.text)

        await run_all(one, requests, concurrency)


async def with_aiohttp(url: str, requests: int, concurrency: int, stream: bool) -> None:
    connector = aiohttp.TCPConnector(limit=1000, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=900)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:

        async def one() -> None:
            async with client.post(url, data=STREAM_BODY if stream else BODY, headers=HEADERS) as response:
                if stream:
                    async for line in response.content:
                        if line.startswith(b"data:"):
                            pass
                else:
                    orjson.loads(await response.text())

        await run_all(one, requests, concurrency)


async def run_all(one, requests: int, concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def gated() -> None:
        async with gate:
            await one()

    await asyncio.gather(*[gated() for _ in range(requests)])


def measure(client, url: str, requests: int, concurrency: int, stream: bool) -> float:
    asyncio.run(client(url, 200, concurrency, stream))  # warm up
    started = time.process_time()
    asyncio.run(client(url, requests, concurrency, stream))
    return (time.process_time() - started) / requests * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    port = free_port()
    mock = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "mock_provider.py"), "--port", str(port), "--delay-ms", "0.2"],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        print(f"{'call':10s} {'client':8s} {'CPU ms/request':>15s} {'vs httpx':>9s}")
        for stream in (False, True):
            requests = args.requests // 4 if stream else args.requests
            # Alternate the order, so neither client always runs on a cold or a warm machine.
            cpu = {}
            for name, client in (("httpx", with_httpx), ("aiohttp", with_aiohttp), ("httpx", with_httpx)):
                cpu.setdefault(name, []).append(measure(client, url, requests, args.concurrency, stream))
            for name in ("httpx", "aiohttp"):
                best = min(cpu[name])
                ratio = best / min(cpu["httpx"])
                print(f"{'stream' if stream else 'post':10s} {name:8s} {best:15.3f} {ratio:8.2f}x")
    finally:
        mock.terminate()


if __name__ == "__main__":
    main()
