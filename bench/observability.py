"""Writer throughput and the gateway's latency with observability on and off, in one run.

    .venv/bin/python bench/observability.py [--rows 50000] [--requests 400]

Part 1 inserts rows through the BatchWriter and compares with one direct bulk insert of the
same rows. Part 2 sends the same requests through the gateway's ASGI app (dummy provider,
in-process routers) with observability off and on, and compares both with calling the model
directly. It prints ratios; read them, not the absolute numbers, on a shared machine."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from tensorzero_ray.api.gateway import create_app
from tensorzero_ray.config import load_config
from tensorzero_ray.functions.routers import LocalRouters
from tensorzero_ray.ids import uuid7
from tensorzero_ray.inference.model import ModelRegistry, RequestExtras
from tensorzero_ray.store.observability import ObservabilityClient, ObservabilityWriter, StorageSettings
from tensorzero_ray.store.rows import ChatInferenceRow
from tensorzero_ray.types import Text
from tensorzero_ray.types.model import ModelInferenceRequest, RequestMessage

ROOT = Path(__file__).resolve().parent.parent
BODY = {
    "function_name": "chat",
    "variant_name": "baseline",
    "input": {"system": {"assistant_name": "Alfred"}, "messages": [{"role": "user", "content": "Hello"}]},
}


def sample_rows(count: int) -> list[dict]:
    return [
        ChatInferenceRow(
            id=uuid7(),
            function_name="bench",
            variant_name="v",
            episode_id=uuid7(),
            input='{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}',
            output='[{"type":"text","text":"hello"}]',
            inference_params="{}",
            tags={"bench": "1"},
        ).record()
        for _ in range(count)
    ]


async def writer_throughput(writer: ObservabilityWriter, rows: int) -> None:
    batch = sample_rows(rows)
    started = time.perf_counter()
    await writer.store.insert("ChatInference", batch)
    direct = time.perf_counter() - started

    batch = sample_rows(rows)
    started = time.perf_counter()
    for start in range(0, rows, 20):
        await writer.write([("ChatInference", batch[start : start + 20])])
    await writer.flush()
    batched = time.perf_counter() - started
    print(
        f"writer: {rows} rows submitted 20 at a time: {rows / batched:,.0f} rows/s; "
        f"one direct bulk insert: {rows / direct:,.0f} rows/s; ratio {batched / direct:.2f}x the direct time"
    )


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
    return f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"


async def gateway_latency(config, writer: ObservabilityWriter, storage: StorageSettings, requests: int) -> None:
    models = ModelRegistry(config.models)
    model = models.get("fast")
    request = ModelInferenceRequest(
        system="You are Alfred.", messages=[RequestMessage(role="user", content=[Text(text="Hello")])]
    )
    direct = []
    for _ in range(requests):
        started = time.perf_counter()
        await model.infer(request, RequestExtras())
        direct.append(time.perf_counter() - started)

    results = {}
    for label, observability in (("off", None), ("on", ObservabilityClient(storage, writer))):
        routers = LocalRouters(config, observability)
        transport = httpx.ASGITransport(app=create_app(config, routers, observability))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            samples = []
            for _ in range(requests):
                started = time.perf_counter()
                response = await client.post("/inference", json=BODY)
                samples.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
        if observability is not None:
            await observability.flush()
        await routers.aclose()
        results[label] = samples
    base = statistics.median(direct)
    print(f"direct model call:        {percentiles(direct)}")
    for label, samples in results.items():
        added = (statistics.median(samples) - base) * 1000
        print(
            f"gateway, observability {label:3}: {percentiles(samples)}; added p50 {added:.2f} ms; "
            f"{statistics.median(samples) / base:.2f}x direct"
        )
    print(f"observability on / off (p50): {statistics.median(results['on']) / statistics.median(results['off']):.2f}x")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    config = load_config(ROOT / "config" / "quickstart" / "tensorzero.toml")
    with tempfile.TemporaryDirectory() as tmp:
        storage = StorageSettings(dsn=f"chdb://{tmp}/clickhouse", spool_path=f"{tmp}/spool/writes.jsonl", required=True)
        writer = ObservabilityWriter(storage)
        await writer.start()
        await writer_throughput(writer, args.rows)
        await gateway_latency(config, writer, storage, args.requests)
        await writer.close()


if __name__ == "__main__":
    asyncio.run(main())
