"""API keys: two Gateway replicas over one store, each with its own auth cache; the UI's
login and session cookie; `tzray keys` through a running stack."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from tensorzero_ray.api.gateway import config_hash, create_app
from tensorzero_ray.functions.routers import LocalRouters
from tensorzero_ray.store.observability import ObservabilityClient
from tensorzero_ray.ui.server import UIServer
from tests.conftest import GATEWAY_ORIGIN, tzray

TTL_S = 0.3
HELLO = {"messages": [{"role": "user", "content": "Hello"}]}


@pytest.fixture(scope="module")
async def replicas(config, storage, writer):
    """Two Gateway replicas as Serve runs them: separate processes' worth of state (routers,
    observability clients, auth caches) over the one writer."""
    protected = config.model_copy(deep=True)
    protected.gateway.auth.enabled = True
    protected.gateway.auth.cache.ttl_ms = int(TTL_S * 1000)
    clients, routers = [], []
    for _ in range(2):
        observability = ObservabilityClient(storage, writer)
        router = LocalRouters(protected, observability)
        ui = UIServer(protected, storage, writer, config_hash=config_hash(protected))
        app = create_app(protected, router, observability, ui)
        routers.append(router)
        clients.append(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=GATEWAY_ORIGIN))
    keys = app.state.api_keys
    yield clients, keys
    for client in clients:
        await client.aclose()
    for router in routers:
        await router.aclose()


def bearer(key: str) -> dict:
    return {"authorization": f"Bearer {key}"}


async def test_a_key_works_on_every_replica_until_it_is_disabled(replicas, writer):
    (first, second), keys = replicas
    key, record = await keys.create("ci")
    answer = await second.post("/inference", json={"model_name": "good", "input": HELLO}, headers=bearer(key))
    assert answer.status_code == 200, answer.text
    await writer.flush()
    stored = await first.post(
        "/v1/inferences/get_inferences", json={"ids": [answer.json()["inference_id"]]}, headers=bearer(key)
    )
    assert stored.json()["inferences"][0]["tags"]["tensorzero::api_key_public_id"] == record.public_id
    feedback = await first.post(
        "/feedback",
        json={"metric_name": "thumbs_up", "inference_id": answer.json()["inference_id"], "value": True},
        headers=bearer(key),
    )
    assert feedback.status_code == 200, feedback.text

    await keys.disable(record.public_id)  # through the other replica's service
    disabled_at = time.monotonic()
    while (await second.get("/v1/datasets/none/datapoints", headers=bearer(key))).status_code != 401:
        assert time.monotonic() - disabled_at < TTL_S + 1.0, "still accepted past the cache's bound"
        await asyncio.sleep(0.05)
    refused = await second.post("/inference", json={"model_name": "good", "input": HELLO}, headers=bearer(key))
    assert refused.status_code == 401
    assert refused.json() == {"error": f"Authentication failed: API key `{record.public_id}` was disabled"}
    listed = {k.public_id: k.state for k in await keys.list()}
    assert listed[record.public_id] == "disabled"


@pytest.mark.parametrize(
    "headers, message",
    [
        ({}, "has no `Authorization: Bearer <API key>` header"),
        ({"authorization": "Bearer not-a-key"}, "the API key is malformed"),
        ({"authorization": "Basic abc"}, "the API key is malformed"),
        ({"authorization": "Bearer sk-t0-aaaaaaaaaaaa-" + "A" * 48}, "unknown API key"),
    ],
    ids=["missing", "malformed", "other-scheme", "unknown"],
)
async def test_bad_keys_get_401_and_nothing_is_stored(replicas, writer, headers, message):
    (first, _), keys = replicas
    probe = uuid.uuid4().hex
    body = {"model_name": "good", "input": HELLO, "tags": {"probe": probe}}
    answer = await first.post("/inference", json=body, headers=headers)
    assert answer.status_code == 401 and message in answer.json()["error"]
    compatible = await first.post(
        "/openai/v1/chat/completions",
        json={"model": "tensorzero::model_name::good", "messages": [{"role": "user", "content": "Hi"}]},
        headers=headers,
    )
    assert compatible.status_code == 401 and message in compatible.json()["error"]["message"]
    key, _ = await keys.create()
    await writer.flush()
    found = await first.post(
        "/v1/inferences/list_inferences",
        json={
            "function_name": "tensorzero::default",
            "filters": {"type": "tag", "key": "probe", "value": probe, "comparison_operator": "="},
        },
        headers=bearer(key),
    )
    assert found.status_code == 200, found.text
    assert found.json()["inferences"] == []


async def test_health_and_status_stay_open(replicas):
    (first, _), _ = replicas
    assert (await first.get("/health")).status_code == 200
    assert (await first.get("/status")).status_code == 200


async def test_an_expired_key_is_refused(replicas):
    (first, _), keys = replicas
    from datetime import datetime, timedelta, timezone

    key, record = await keys.create(expires_at=datetime.now(timezone.utc) + timedelta(seconds=0.3))
    assert (await first.get("/status", headers=bearer(key))).status_code == 200
    await asyncio.sleep(0.4 + TTL_S)
    refused = await first.post("/inference", json={"model_name": "good", "input": HELLO}, headers=bearer(key))
    assert refused.json() == {"error": f"Authentication failed: API key `{record.public_id}` has expired"}


async def test_the_ui_needs_a_login_and_keeps_the_key_in_a_strict_cookie(replicas):
    (first, _), keys = replicas
    key, _ = await keys.create("ui")
    page = await first.get("/ui/observability/models")
    assert page.status_code == 303 and page.headers["location"] == "/ui/login?next=%2Fui%2Fobservability%2Fmodels"
    login = await first.get(page.headers["location"])
    assert login.status_code == 200 and "name='api_key'" in login.text
    target = "/ui/login?next=%2Fui%2Fobservability%2Fmodels"
    cross_site = await first.post(target, data={"api_key": key}, headers={"origin": "http://evil.example"})
    assert cross_site.status_code == 403 and "set-cookie" not in cross_site.headers
    wrong = await first.post(target, data={"api_key": "sk-t0-x"}, headers={"origin": GATEWAY_ORIGIN})
    assert wrong.status_code == 401 and "malformed" in wrong.text
    signed_in = await first.post(target, data={"api_key": key}, headers={"origin": GATEWAY_ORIGIN})
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/ui/observability/models"
    cookie = signed_in.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and cookie.startswith("tzray_session=")
    session = {"cookie": cookie.split(";", 1)[0]}
    assert (await first.get("/ui/observability/models", headers=session)).status_code == 200
    # A form posted from another site, with the session cookie a browser would attach (were it
    # not SameSite): the UI's own origin check refuses it.
    forged = await first.post(
        "/ui/datasets/builder", data={"dataset_name": "x"}, headers={**session, "origin": "http://evil.example"}
    )
    assert forged.status_code == 403
    assert (await first.get("/ui/login?next=https://evil.example/")).text.count("next=%2Fui%2F") == 1
    out = await first.post("/ui/logout", headers={**session, "origin": GATEWAY_ORIGIN})
    assert out.status_code == 303 and 'tzray_session=""' in out.headers["set-cookie"]


def test_tzray_keys_creates_lists_and_disables_through_the_stack(tzray_up):
    workdir = tzray_up[2]
    # From a shell that never set RAY_AUTH_MODE, as the README runs it: the token `tzray up` made is used.
    fresh = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    made = subprocess.run(
        [sys.executable, "-m", "tensorzero_ray.cli", "keys", "create", "--description", "from the CLI"],
        cwd=workdir, capture_output=True, text=True, timeout=300, env=fresh,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-2000:]
    key = made.stdout.strip()
    assert key.startswith("sk-t0-") and len(key) == 6 + 12 + 1 + 48
    public_id = key[6:18]
    listed = tzray("keys", "list", cwd=workdir)
    line = next(line for line in listed.stdout.splitlines() if line.startswith(public_id))
    assert "active" in line and "from the CLI" in line
    assert tzray("keys", "disable", public_id, cwd=workdir).returncode == 0
    listed = tzray("keys", "list", cwd=workdir)
    assert "disabled" in next(line for line in listed.stdout.splitlines() if line.startswith(public_id))
    missing = tzray("keys", "disable", "nosuchkey123", cwd=workdir)
    assert missing.returncode == 1 and "No API key with public id `nosuchkey123`" in missing.stderr


async def test_keys_from_the_ui(gateway, ui_post):
    page = await gateway.get("/ui/api-keys")
    assert page.status_code == 200 and "Authentication is off" in page.text
    made = await ui_post("/ui/api-keys", {"description": "made in the UI"})
    assert made.status_code == 201, made.text
    key = re.search(r"sk-t0-[a-z0-9]{12}-[A-Za-z0-9]{48}", made.text).group(0)
    public_id = key[6:18]
    listed = await gateway.get("/ui/api-keys")
    assert public_id in listed.text and "made in the UI" in listed.text and key not in listed.text
    bad = await ui_post("/ui/api-keys", {"expires_at": "next tuesday"})
    assert bad.status_code == 400 and "is not an RFC 3339 time" in bad.text
    disabled = await ui_post(f"/ui/api-keys/{public_id}/disable", {})
    assert disabled.status_code == 303
    row = next(line for line in (await gateway.get("/ui/api-keys")).text.splitlines() if public_id in line)
    assert "disabled" in row


async def test_in_cluster_handle_methods_need_no_key(config, storage, writer):
    """The Gateway's handle methods (in-cluster clients) came through Ray's authentication."""
    from tensorzero_ray.serve.gateway import Gateway

    protected = config.model_copy(deep=True)
    protected.gateway.auth.enabled = True
    gateway = Gateway(protected, storage=storage, writer=writer)
    status, body = await gateway.request("POST", "/v1/inferences/list_inferences", {"limit": 1})
    assert status == 200, body
    answer = await gateway.inference({"model_name": "good", "input": HELLO})
    assert answer["content"][0]["text"]
    app = gateway.__serve_build_asgi_app__()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=GATEWAY_ORIGIN) as http:
        outside = await http.post("/v1/inferences/list_inferences", json={"limit": 1})
    assert outside.status_code == 401, "the same app over HTTP still needs a key"
