"""Screenshots of the UI's main pages for the README, made the same way every time:

    .venv/bin/python docs/screenshots.py            # writes docs/screenshots/*.png

Runs the gateway and the UI in this process on the offline quickstart config over a fresh
embedded store, sends half a minute of traffic and feedback through the gateway's HTTP API
(the `concise` variant gets more thumbs up than `baseline`), then drives Debian's Chromium
with Playwright. Needs the `test` extra (uvicorn, playwright) and /usr/bin/chromium."""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import tempfile
from pathlib import Path

import httpx
import uvicorn

from tensorzero_ray.api.gateway import config_hash, create_app
from tensorzero_ray.config import load_config
from tensorzero_ray.functions.routers import LocalRouters
from tensorzero_ray.store.observability import ObservabilityClient, ObservabilityWriter, StorageSettings
from tensorzero_ray.ui.chromium import CHROMIUM_ARGS, chromium_path
from tensorzero_ray.ui.server import UIServer

ROOT = Path(__file__).resolve().parent.parent
PAGES = {
    "home": "/ui/",
    "inferences": "/ui/observability/inferences",
    "inference": None,  # the newest inference, found after seeding
    "function": "/ui/observability/functions/chat?metric=thumbs_up",
    "models": "/ui/observability/models",
    "dataset-builder": "/ui/datasets/builder?dataset_name=liked&function=chat&metric=thumbs_up&metric_value=true"
    "&preview=1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def seed(url: str, seconds: float) -> str:
    """Traffic through the gateway: chat inferences with feedback, some JSON and tool calls."""
    rng = random.Random(7)
    liked = {"baseline": 0.55, "concise": 0.8, "safe": 0.5}
    last = ""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while loop.time() < end:
            question = rng.choice(["Hello", "What can you do?", "Summarise Ray Serve", "Tell me a joke"])
            body = {
                "function_name": "chat",
                "input": {"system": {"assistant_name": "Alfred"}, "messages": [{"role": "user", "content": question}]},
                "tags": {"user": f"u-{rng.randint(1, 20)}"},
            }
            r = (await http.post("/inference", json=body)).json()
            if "inference_id" in r:
                last = r["inference_id"]
                thumbs = rng.random() < liked.get(r["variant_name"], 0.5)
                await http.post("/feedback", json={"metric_name": "thumbs_up", "inference_id": last, "value": thumbs})
            if rng.random() < 0.2:
                await http.post(
                    "/inference",
                    json={
                        "function_name": "extract",
                        "input": {"messages": [{"role": "user", "content": {"text": "Ada Lovelace, 1815"}}]},
                    },
                )
            if rng.random() < 0.1:
                await http.post(
                    "/inference",
                    json={"function_name": "weather", "input": {"messages": [{"role": "user", "content": "Oslo?"}]}},
                )
            await asyncio.sleep(rng.uniform(0.01, 0.06))
    return last


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    from playwright.async_api import async_playwright

    config = load_config(str(ROOT / "config" / "quickstart" / "tensorzero.toml"))
    with tempfile.TemporaryDirectory() as tmp:
        storage = StorageSettings(
            dsn=f"chdb://{tmp}/clickhouse", spool_path=f"{tmp}/spool/writes.jsonl", required=True, flush_interval_s=0.2
        )
        writer = ObservabilityWriter(storage)
        await writer.start()
        observability = ObservabilityClient(storage, writer)
        routers = LocalRouters(config, observability)
        ui = UIServer(config, storage, writer, config_hash=config_hash(config))
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(config, routers, observability, ui), port=port, log_level="warning")
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        last = await seed(url, args.seconds)
        await observability.flush()
        args.out.mkdir(parents=True, exist_ok=True)
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 1440, "height": 1000})
            for name, path in PAGES.items():
                await page.goto(url + (path or f"/ui/observability/inferences/{last}"))
                await page.screenshot(path=str(args.out / f"{name}.png"), full_page=name != "inference")
                print("wrote", args.out / f"{name}.png")
            await browser.close()
        server.should_exit = True
        await serving
        await routers.aclose()
        await writer.close()


if __name__ == "__main__":
    asyncio.run(main())
