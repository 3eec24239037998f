"""Rate limits in TensorZero's `[rate_limiting]` form, across two Gateway replicas that lease
from one ledger: counts and tokens per scope, priorities, 429s that name the limit with
nothing sent to the provider, and no overshoot under 50 concurrent clients."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tensorzero_ray.api.gateway import create_app
from tensorzero_ray.config import ConfigError, load_config
from tensorzero_ray.functions.routers import LocalRouters
from tensorzero_ray.rate_limiting import RateLimiter
from tensorzero_ray.rate_limiting.ledger import LocalLedger
from tests.conftest import GATEWAY_ORIGIN

HELLO = {"messages": [{"role": "user", "content": "Hello"}]}


def write_config(tmp_path, openai_mock, rules: str) -> str:
    path = tmp_path / "tensorzero.toml"
    key = tmp_path / "key"
    key.write_text(openai_mock.api_key)
    path.write_text(
        f"""
[gateway.observability]
enabled = false
[models.gpt]
routing = ["openai"]
[models.gpt.providers.openai]
type = "openai"
model_name = "gpt-ok"
api_base = "{openai_mock.url}/v1/"
api_key_location = "path::{key}"
[functions.chat]
type = "chat"
[functions.chat.variants.only]
type = "chat_completion"
model = "gpt"
{rules}
"""
    )
    return str(path)


async def replicas(config, ledger, count: int = 2) -> list[httpx.AsyncClient]:
    clients = []
    for _ in range(count):
        routers = LocalRouters(config, None, rate_limiter=RateLimiter(config.rate_limiting, ledger))
        app = create_app(config, routers)
        clients.append(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=GATEWAY_ORIGIN))
    return clients


def call(client, customer: str | None = None, **params):
    body = {"function_name": "chat", "input": HELLO, "tags": {"customer": customer} if customer else {}}
    if params:
        body["params"] = {"chat_completion": params}
    return client.post("/inference", json=body)


async def test_each_customer_has_its_own_count_across_replicas(tmp_path, openai_mock):
    rules = """
[[rate_limiting.rules]]
model_inferences_per_minute = 4
priority = 1
scope = [{ tag_key = "customer", tag_value = "tensorzero::each" }]
"""
    config = load_config(write_config(tmp_path, openai_mock, rules))
    first, second = await replicas(config, LocalLedger())
    sent_before = len(openai_mock.requests)
    statuses = [(await call(client, "acme")).status_code for client in (first, second, first, second)]
    assert statuses == [200] * 4
    refused = await call(second, "acme")
    assert refused.status_code == 429
    assert refused.json()["error"].startswith(
        "Rate limit exceeded: `model_inferences_per_minute = 4` of rule 0 (scope customer=acme) has no capacity left"
    )
    assert len(openai_mock.requests) == sent_before + 4, "nothing sent for the refused request"
    assert (await call(first, "globex")).status_code == 200, "another customer has its own bucket"
    assert (await call(first)).status_code == 200, "a request outside every scope is not limited"


async def test_priorities_and_always_rules(tmp_path, openai_mock):
    rules = """
[[rate_limiting.rules]]
model_inferences_per_minute = 1
priority = 1
scope = [{ tag_key = "customer", tag_value = "tensorzero::total" }]

[[rate_limiting.rules]]
model_inferences_per_minute = 3
priority = 2
scope = [{ tag_key = "customer", tag_value = "vip" }]

[[rate_limiting.rules]]
model_inferences_per_minute = 5
always = true
"""
    config = load_config(write_config(tmp_path, openai_mock, rules))
    (client,) = await replicas(config, LocalLedger(), count=1)
    # vip: only its priority-2 rule and the always rule apply.
    assert [(await call(client, "vip")).status_code for _ in range(4)] == [200, 200, 200, 429]
    # Any other customer: the shared priority-1 bucket of 1.
    assert [(await call(client, c)).status_code for c in ("a", "b")] == [200, 429]
    # The always rule counted every one of them: 4 of its 5 are used.
    assert (await call(client)).status_code == 200
    last = await call(client)
    assert last.status_code == 429 and "`model_inferences_per_minute = 5` of rule 2" in last.json()["error"]


async def test_token_limits_need_max_tokens_and_settle_on_real_usage(tmp_path, openai_mock):
    rules = """
[[rate_limiting.rules]]
tokens_per_hour = 400
always = true
"""
    config = load_config(write_config(tmp_path, openai_mock, rules))
    (client,) = await replicas(config, LocalLedger(), count=1)
    missing = await call(client)
    assert missing.status_code == 400 and "needs `max_tokens`" in missing.json()["error"]
    assert "RateLimitMissingMaxTokens" in missing.json()["error"]
    # Each reserves about 300 tokens (input estimate + max_tokens) and uses far fewer: the
    # unused part comes back, so more calls fit than the estimate alone would allow.
    statuses = [(await call(client, max_tokens=300)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 200]


async def test_no_overshoot_under_50_concurrent_clients(tmp_path, openai_mock):
    rules = """
[[rate_limiting.rules]]
model_inferences_per_hour = 60
always = true
"""
    config = load_config(write_config(tmp_path, openai_mock, rules))
    clients = await replicas(config, LocalLedger(), count=2)
    answers = await asyncio.gather(*[call(clients[i % 2]) for i in range(150)])
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == 60, "exactly the limit, spread over two replicas"
    assert statuses.count(429) == 90


async def test_cost_limits_reserve_the_default_cost_when_the_cost_is_unknown(tmp_path, openai_mock):
    rules = """
[rate_limiting]
default_cost = 0.25
[[rate_limiting.rules]]
cost_per_day = 1.0
always = true
"""
    config = load_config(write_config(tmp_path, openai_mock, rules))
    (client,) = await replicas(config, LocalLedger(), count=1)
    # The provider has no `cost` config: each call keeps its 0.25 estimate.
    assert [(await call(client)).status_code for _ in range(5)] == [200, 200, 200, 200, 429]


def test_bad_rules_are_refused_at_start_up(tmp_path, openai_mock):
    unknown = "[[rate_limiting.rules]]\nrequests_per_day = 5\nalways = true\n"
    with pytest.raises(ConfigError, match="unknown key `requests_per_day`"):
        load_config(write_config(tmp_path, openai_mock, unknown))
    both = "[[rate_limiting.rules]]\ntokens_per_day = 5\nalways = true\npriority = 1\n"
    with pytest.raises(ConfigError, match="`priority = <integer>` or `always = true`"):
        load_config(write_config(tmp_path, openai_mock, both))


LEDGER_ON_RAY = """
import asyncio, json, os, uuid
import ray
from tensorzero_ray.config.rate_limiting import RateLimitingConfig
from tensorzero_ray.rate_limiting import RateLimited, RateLimiter, shared_ledger

ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
config = RateLimitingConfig.model_validate({"rules": [{
    "model_inferences_per_hour": 40, "always": True,
    "scope": [{"tag_key": "run", "tag_value": "tensorzero::each"}]}]})
# Two replicas' limiters, each with its own handle to the one named ledger actor.
limiters = [RateLimiter(config, shared_ledger()) for _ in range(2)]
tags = {"run": uuid.uuid4().hex}

async def one(i):
    try:
        await limiters[i % 2].reserve(tags, 10, None)
        return True
    except RateLimited:
        return False

async def main():
    results = await asyncio.gather(*[one(i) for i in range(100)])
    print(json.dumps({"accepted": sum(results), "refused": results.count(False)}))

asyncio.run(main())
"""


def test_replicas_on_a_ray_cluster_share_the_ledger_actor(tzray_up):
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", LEDGER_ON_RAY], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"accepted": 40, "refused": 60}
