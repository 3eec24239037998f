"""What rate limits cost and how well they hold: the gateway's ASGI app as two replicas
leasing from one ledger, 50 concurrent clients, with and without limits, in one run.

    .venv/bin/python bench/rate_limits.py [--requests 3000] [--clients 50]

The model is the fast mock (bench/mock_provider.py) in a process of its own; observability
is off, so CPU is the gateway's own request path (this process). Prints CPU per request with
and without limits and the ratio, and the overshoot: requests and tokens accepted past each
limit (a token limit settles estimates against real usage, so it is the one that can).
CPU per request is compared where the limits never bind: refused requests cost little and
would flatter the limited runs."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import free_port, wait_http  # noqa: E402

from tensorzero_ray.api.gateway import create_app  # noqa: E402
from tensorzero_ray.config import load_config  # noqa: E402
from tensorzero_ray.functions.routers import LocalRouters  # noqa: E402
from tensorzero_ray.rate_limiting import RateLimiter  # noqa: E402
from tensorzero_ray.rate_limiting.ledger import LocalLedger  # noqa: E402

CONFIG = """
[gateway.observability]
enabled = false
[models.bench]
routing = ["mock"]
[models.bench.providers.mock]
type = "openai"
model_name = "bench"
api_base = "http://127.0.0.1:{port}/v1/"
api_key_location = "none"
[functions.ask]
type = "chat"
[functions.ask.variants.only]
type = "chat_completion"
model = "bench"
max_tokens = 100
{rules}
"""
RULES = """
[[rate_limiting.rules]]
model_inferences_per_hour = {inferences}
always = true
[[rate_limiting.rules]]
tokens_per_hour = {tokens}
priority = 1
scope = [{{ tag_key = "customer", tag_value = "tensorzero::each" }}]
"""
WARM_UP = 20
BODY = {
    "function_name": "ask",
    "input": {"messages": [{"role": "user", "content": "Hello"}]},
    "tags": {"customer": "acme"},
}


async def drive(config_text: str, requests: int, clients: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tensorzero.toml"
        path.write_text(config_text)
        config = load_config(path)
    ledger = LocalLedger()
    routers = [LocalRouters(config, None, rate_limiter=RateLimiter(config.rate_limiting, ledger)) for _ in range(2)]
    apps = [create_app(config, r) for r in routers]
    http = [httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://gateway") for a in apps]
    queue = list(range(requests))
    statuses: list[int] = []
    tokens = 0

    async def client(index: int) -> None:
        nonlocal tokens
        while queue:
            queue.pop()
            answer = await http[index % 2].post("/inference", json=BODY)
            statuses.append(answer.status_code)
            if answer.status_code == 200:
                usage = answer.json()["usage"]
                tokens += usage["input_tokens"] + usage["output_tokens"]

    for warm in range(WARM_UP):
        await http[warm % 2].post("/inference", json={**BODY, "tags": {}})
    started = time.process_time()
    await asyncio.gather(*[client(i) for i in range(clients)])
    cpu = time.process_time() - started
    for c in http:
        await c.aclose()
    for r in routers:
        await r.aclose()
    return {
        "cpu_ms": cpu * 1000 / requests,
        "ok": statuses.count(200),
        "limited": statuses.count(429),
        "tokens": tokens,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    port = free_port()
    mock = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "mock_provider.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/")
        # The count limit binds at a third of the requests; the token limit (per customer) at half.
        inferences, tokens = args.requests // 3, args.requests // 2 * 120
        plain = CONFIG.format(port=port, rules="")
        limited_count = CONFIG.format(port=port, rules=RULES.format(inferences=inferences, tokens=10**12))
        limited_tokens = CONFIG.format(port=port, rules=RULES.format(inferences=10**9, tokens=tokens))
        roomy = CONFIG.format(port=port, rules=RULES.format(inferences=10**9, tokens=10**12))
        rows = {}
        cases = (
            ("no limits", plain),
            ("limits, room", roomy),
            ("count limit", limited_count),
            ("token limit", limited_tokens),
        )
        for name, text in cases:
            rows[name] = await drive(text, args.requests, args.clients)
    finally:
        mock.kill()
    base = rows["no limits"]["cpu_ms"]
    print(f"{args.requests} requests, {args.clients} concurrent clients, two replicas on one ledger")
    print("case          CPU ms/req  x no limits  accepted  429s  tokens used")
    for name, row in rows.items():
        print(
            f"{name:<13} {row['cpu_ms']:>10.3f}  {row['cpu_ms'] / base:>11.2f}  {row['ok']:>8}  {row['limited']:>4}"
            f"  {row['tokens']:>11}"
        )
    added = rows["limits, room"]["cpu_ms"] - base
    print(
        f"CPU added per request by two rules that never bind: {added:.3f} ms ({rows['limits, room']['cpu_ms'] / base:.2f}x)"
    )
    # The 20 warm-up requests fall under the count rule (it has no scope) and are counted.
    count = rows["count limit"]["ok"] + WARM_UP
    print(f"count limit {inferences}: accepted {count} (warm-up included), overshoot {count - inferences}")
    used = rows["token limit"]["tokens"]
    print(
        f"token limit {tokens}: used {used}, overshoot {max(0, used - tokens)} ({max(0, used - tokens) / tokens:.2%})"
    )


if __name__ == "__main__":
    asyncio.run(main())
