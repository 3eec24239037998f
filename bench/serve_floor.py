"""What Ray Serve costs before any gateway code runs: the CPU per request of the machine
with an app that does nothing, next to the whole tensorzero-ray stack, in one run.

    .venv/bin/python bench/serve_floor.py --rates 100,200 --duration 8

Starts Ray exactly as `tzray up` does (HAProxy ingress, throughput-optimized Serve, token
auth, the dashboard), then measures, on the same cluster and the same mock provider:
- `direct`: the load generator calling the mock itself;
- `floor`: two Serve replicas whose ASGI app answers a fixed body without reading it;
- `floor+call`: the same app making one pooled aiohttp call to the mock per request;
- `stack`: `tzray up` on the same cluster, `/inference` with observability on.
Also the machine's idle CPU with the stack up. CPU per request is the whole machine's, less
the mock's and the load generator's, as in bench/run.py."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from ray import serve

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import MESSAGES, TICKS, Stack, Target, busy_ticks, free_port, measure, wait_http  # noqa: E402

from tensorzero_ray.cli import _connect, _use_ray_token  # noqa: E402

ANSWER = json.dumps({"inference_id": "0" * 36, "content": [{"type": "text", "text": "x" * 300}]}).encode()


class Floor:
    """An ASGI app with nothing in it: what Serve's ingress and a replica cost per request."""

    def __init__(self, mock_url: str | None):
        self._mock_url = mock_url
        self._session: aiohttp.ClientSession | None = None

    def __serve_build_asgi_app__(self):
        return self._app

    async def _app(self, scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        body = ANSWER
        if self._mock_url:
            if self._session is None:
                self._session = aiohttp.ClientSession()
            payload = json.dumps({"model": "bench", "messages": MESSAGES}).encode()
            headers = {"content-type": "application/json"}
            async with self._session.post(self._mock_url, data=payload, headers=headers) as response:
                body = await response.read()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


def idle_cores(seconds: float) -> float:
    before = busy_ticks()
    time.sleep(seconds)
    return (busy_ticks() - before) / TICKS / seconds


async def measure_all(targets: list[Target], rates: list[float], duration: float, mock) -> list[dict]:
    rows = []
    for index, rate in enumerate(rates):
        for target in targets if index % 2 == 0 else list(reversed(targets)):
            rows.append(await measure(target, rate, duration, mock))
            print(f"  measured {target.system} at {rate:.0f}/s", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="100,200")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--replicas", type=int, default=2)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    chat = {"model": "bench", "messages": MESSAGES}
    native = {"function_name": "function1", "input": {"messages": MESSAGES}}
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp), free_port())
        try:
            mock = stack.mock()
            mock_url = f"http://127.0.0.1:{stack.mock_port}/v1/chat/completions"
            token_auth = _use_ray_token()
            ray_args = argparse.Namespace(address=None, ha_proxy=True, throughput_optimized=True, dashboard=True)
            _connect(ray_args, token_auth)
            port = free_port()
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            floor = [
                Target("direct", "mock", stack.mock_port, "/v1/chat/completions", False, chat, [], []),
                Target("floor", "/", port, "/", False, native, [], []),
                Target("floor+call", "/call", port, "/call", False, native, [], []),
            ]
            deployment = serve.deployment(serve.ingress()(Floor), max_ongoing_requests=1000)
            for name, prefix, url in (("floor", "/", None), ("floor-call", "/call", mock_url)):
                app = deployment.options(name=name, num_replicas=args.replicas).bind(url)
                serve.run(app, name=name, route_prefix=prefix)
            wait_http(f"http://127.0.0.1:{port}/call")
            rows = asyncio.run(measure_all(floor, rates, args.duration, mock))
            for name in ("floor", "floor-call"):
                serve.delete(name)
            stack_port = stack.tzray("in_process", True, ["--gateway-replicas", str(args.replicas)])
            inference = Target("stack", "/inference", stack_port, "/inference", False, native, [], [])
            asyncio.run(measure_all([inference], [20], 2, mock))
            rows += asyncio.run(measure_all([inference], rates, args.duration, mock))
            idle = idle_cores(args.duration)
        finally:
            stack.close()
            subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"], capture_output=True)
    print(
        f"idle with the stack up: {idle:.2f} cores = {idle * 1000 / max(rates):.2f} ms of every request at {max(rates):.0f}/s"
    )
    by = {(r["system"], r["rate"]): r for r in rows}
    print("system       rate  errors  p50 ms  p99 ms  CPU ms/req  x floor")
    for (system, rate), row in sorted(by.items(), key=lambda item: (item[0][1], item[0][0])):
        base = by.get(("floor", rate), {}).get("cpu_ms_per_request") or None
        ratio = f"{row['cpu_ms_per_request'] / base:.2f}" if base else "-"
        print(
            f"{system:<12} {rate:>4.0f}  {row['errors']:>6}  {row['p50'] or 0:>6.2f}  {row['p99'] or 0:>6.2f}"
            f"  {row['cpu_ms_per_request']:>10.2f}  {ratio:>7}"
        )
    out = Path(__file__).resolve().parent / "results" / f"serve-floor-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"args": vars(args), "cpus": os.cpu_count(), "idle_cores": idle, "rows": rows}, indent=1))
    print(f"wrote {out.relative_to(Path(__file__).resolve().parent.parent)}")


if __name__ == "__main__":
    main()
