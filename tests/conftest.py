"""Shared fixtures: local mock provider servers, the test config pointed at them, an
in-process gateway, and one real Ray cluster with Serve for the whole session."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# `tzray up` starts Ray with token authentication; Ray's job CLI needs to be told, as the
# README tells its readers (set before Ray is imported: its client reads the mode once).
os.environ.setdefault("RAY_AUTH_MODE", "token")

import httpx
import pytest

from tensorzero_ray.api.gateway import config_hash, create_app
from tensorzero_ray.config import load_config
from tensorzero_ray.functions.routers import LocalRouters
from tensorzero_ray.store.observability import ObservabilityClient, ObservabilityWriter, StorageSettings
from tensorzero_ray.ui.server import UIServer
from tests.mocks.anthropic_server import AnthropicMock
from tests.mocks.google_server import GoogleMock
from tests.mocks.openai_server import OpenAIMock
from tests.mocks.server import BackgroundServer, free_port

ROOT = Path(__file__).resolve().parent.parent
# Provider health files (load balancing, circuit breakers) of this session, not the machine's.
os.environ.setdefault("TENSORZERO_RAY_STATE_DIR", tempfile.mkdtemp(prefix="tzray-state-"))
CONFIG_DIR = Path(__file__).parent / "config"

PROVIDERS_TOML = """
# The mocks listen on loopback: input-file URLs may point at them (and nowhere else private).
[gateway.security]
fetch_allowed_hosts = ["{openai_host}"]

[models.gpt]
routing = ["openai"]
[models.gpt.providers.openai]
type = "openai"
model_name = "gpt-ok"
api_base = "{openai}/v1/"
api_key_location = "path::{openai_key}"

[models.gpt_tools]
routing = ["openai"]
[models.gpt_tools.providers.openai]
type = "openai"
model_name = "gpt-tool"
api_base = "{openai}/v1/"
api_key_location = "path::{openai_key}"

[models.gpt_fallback]
routing = ["down", "up"]
[models.gpt_fallback.providers.down]
type = "openai"
model_name = "gpt-500"
api_base = "{openai}/v1/"
api_key_location = "path::{openai_key}"
[models.gpt_fallback.providers.up]
type = "vllm"
model_name = "gpt-ok-noauth"
api_base = "{openai}/v1/"

[models.gpt_break]
routing = ["openai"]
[models.gpt_break.providers.openai]
type = "openai"
model_name = "gpt-break"
api_base = "{openai}/v1/"
api_key_location = "path::{openai_key}"

[models.claude]
routing = ["anthropic"]
[models.claude.providers.anthropic]
type = "anthropic"
model_name = "claude-ok"
api_base = "{anthropic}/v1/messages"
api_key_location = "path::{anthropic_key}"

[models.gpt_json]
routing = ["openai"]
[models.gpt_json.providers.openai]
type = "openai"
model_name = "gpt-json"
api_base = "{openai}/v1/"
api_key_location = "path::{openai_key}"

[models.gpt_batch_fail]
routing = ["openai"]
[models.gpt_batch_fail.providers.openai]
type = "openai"
model_name = "gpt-batch-fail"
api_base = "{openai}/v1/"
api_key_location = "path::{openai_key}"

[functions.batch_json]
type = "json"
output_schema = "functions/json_success/output_schema.json"
[functions.batch_json.variants.gpt]
type = "chat_completion"
model = "gpt_json"

[functions.batch_fail]
type = "chat"
[functions.batch_fail.variants.gpt]
type = "chat_completion"
model = "gpt_batch_fail"

[functions.openai_chat]
type = "chat"
[functions.openai_chat.variants.gpt]
type = "chat_completion"
model = "gpt"
max_tokens = 100

[functions.provider_fallback]
type = "chat"
[functions.provider_fallback.variants.v]
type = "chat_completion"
model = "gpt_fallback"

[functions.stream_break]
type = "chat"
[functions.stream_break.variants.v]
type = "chat_completion"
model = "gpt_break"

[embedding_models.embedder]
routing = ["openai"]
[embedding_models.embedder.providers.openai]
type = "openai"
model_name = "text-embedding-3-small"
api_base = "{openai}/v1/"
api_key_location = "path::{openai_key}"

[functions.anthropic_chat]
type = "chat"
[functions.anthropic_chat.variants.claude]
type = "chat_completion"
model = "claude"
max_tokens = 100
"""


@pytest.fixture(scope="session")
def openai_mock():
    mock = OpenAIMock()
    with BackgroundServer(mock.app) as server:
        mock.url = server.url
        yield mock


@pytest.fixture(scope="session")
def anthropic_mock():
    mock = AnthropicMock()
    with BackgroundServer(mock.app) as server:
        mock.url = server.url
        yield mock


@pytest.fixture(scope="session")
def google_mock():
    mock = GoogleMock()
    with BackgroundServer(mock.app) as server:
        mock.url = server.url
        yield mock


@pytest.fixture(scope="session")
def service_account_file(tmp_path_factory, google_mock) -> Path:
    """A real service-account key whose token endpoint is the mock, which checks its signature."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    google_mock.public_key_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    info = {
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": "key-1",
        "private_key": private_pem.decode(),
        "client_email": "gateway@test-project.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": f"{google_mock.url}/token",
    }
    path = tmp_path_factory.mktemp("gcp") / "service-account.json"
    path.write_text(json.dumps(info))
    return path


def copy_tracked(source: Path, target: Path) -> None:
    """A folder's files as the repository has them: files a user added there (a snippet from a
    walkthrough, a local override) stay out of the tests' configs."""
    listed = subprocess.run(["git", "ls-files", "-z", "."], cwd=source, capture_output=True)
    names = [n for n in listed.stdout.decode().split("\0") if n] if listed.returncode == 0 else []
    if not names:  # not a git checkout (an unpacked release): the folder as it is
        shutil.copytree(source, target)
        return
    for name in names:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, target / name)


@pytest.fixture(scope="session")
def config_dir(tmp_path_factory, openai_mock, anthropic_mock) -> Path:
    """A copy of tests/config plus providers.toml pointing at the mocks; load it with the glob."""
    target = tmp_path_factory.mktemp("config") / "config"
    copy_tracked(CONFIG_DIR, target)
    (target / "openai_key").write_text(openai_mock.api_key)
    (target / "anthropic_key").write_text(anthropic_mock.api_key)
    (target / "providers.toml").write_text(
        PROVIDERS_TOML.format(
            openai_host=openai_mock.url.removeprefix("http://"),
            openai=openai_mock.url,
            anthropic=anthropic_mock.url,
            openai_key=target / "openai_key",
            anthropic_key=target / "anthropic_key",
        )
    )
    return target


@pytest.fixture(scope="session")
def config_glob(config_dir) -> str:
    return str(config_dir / "*.toml")


@pytest.fixture(scope="session")
def config(config_glob):
    return load_config(config_glob)


@pytest.fixture(scope="session")
def storage(tmp_path_factory) -> StorageSettings:
    """The embedded chDB store of this test process (one engine per process)."""
    base = tmp_path_factory.mktemp("store")
    return StorageSettings(
        dsn=f"chdb://{base / 'clickhouse'}",
        spool_path=str(base / "spool" / "writes.jsonl"),
        required=True,
        flush_interval_s=0.05,
    )


@pytest.fixture(scope="session")
async def writer(storage):
    writer = ObservabilityWriter(storage)
    await writer.start()
    yield writer
    await writer.close()


@pytest.fixture(scope="session")
async def observability(storage, writer) -> ObservabilityClient:
    return ObservabilityClient(storage, writer)


@pytest.fixture(scope="session")
async def gateway(config, observability, storage, writer):
    """The gateway's ASGI app with in-process routers and an in-process ObservabilityWriter:
    the whole request path minus Ray."""
    routers = LocalRouters(config, observability)
    ui = UIServer(config, storage, writer, config_hash=config_hash(config))
    transport = httpx.ASGITransport(app=create_app(config, routers, observability, ui))
    async with httpx.AsyncClient(transport=transport, base_url=GATEWAY_ORIGIN) as client:
        yield client
    await routers.aclose()


GATEWAY_ORIGIN = "http://localhost"


@pytest.fixture(scope="session")
def ui_post(gateway):
    """Posts a UI form as a browser does: with the token cookie its pages set, the token in
    the form, and the page's Origin."""
    token: list[str] = []

    async def post(path: str, fields: dict) -> httpx.Response:
        if not token:
            page = await gateway.get("/ui/", headers={"cookie": "fresh=1"})  # no token yet: one is issued
            cookie = next(c for c in page.headers.get_list("set-cookie") if c.startswith("tzray_csrf="))
            token.append(cookie.split(";", 1)[0].split("=", 1)[1])
        return await gateway.post(
            path,
            data={**fields, "csrf_token": token[0]},
            headers={"origin": GATEWAY_ORIGIN, "cookie": f"tzray_csrf={token[0]}"},
        )

    return post


def tzray(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tensorzero_ray.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
    )


DEPLOY = """
import ray, sys
from ray import serve
from tensorzero_ray.config import load_config
from tensorzero_ray.serve.app import build_application

ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
application = build_application(load_config(sys.argv[1]), gateway_replicas=int(sys.argv[4]))
serve.run(application, name=sys.argv[2], route_prefix=sys.argv[3])
"""


def deploy_app(config: str, name: str, route_prefix: str, serve_url: str, gateway_replicas: int = 1) -> None:
    """Another application on the session's cluster (beside `serve_url`'s), built the way
    `tzray up` builds its own, from a separate process as a user would. Returns once its route
    answers through the proxy (HAProxy learns new routes a moment after Serve has them)."""
    command = [sys.executable, "-c", DEPLOY, config, name, route_prefix, str(gateway_replicas)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{serve_url}{route_prefix}/status", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{route_prefix} never answered through the proxy"
        time.sleep(0.2)  # the proxy's route table is outside this process: polling is all there is


DELETE = """
import ray, sys
from ray import serve

ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
serve.delete(sys.argv[1])
"""


def delete_app(name: str) -> None:
    """Frees what an application holds, so later tests find the cluster's CPUs as a user's
    machine would have them (the session's stack only)."""
    done = subprocess.run([sys.executable, "-c", DELETE, name], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


README_PORT = 8000


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="session")
def tzray_up(tmp_path_factory) -> tuple[str, str]:
    """`tzray up` on the quickstart, as the README runs it: a real Ray cluster, the Serve HTTP
    proxy on the README's port when it is free, a Gateway and a FunctionRouter deployment per
    function. `tzray down` at the end.
    (URL, what `tzray up` printed, the folder it ran in)."""
    workdir = tmp_path_factory.mktemp("stack")
    # Jobs run where `tzray up` ran (the README runs both at the repo root): `jobs/` is there.
    (workdir / "jobs").symlink_to(ROOT / "jobs")
    port = README_PORT if port_is_free(README_PORT) else free_port()
    quickstart = ROOT / "config" / "quickstart" / "tensorzero.toml"
    started = tzray("up", "--config", str(quickstart), "--port", str(port), cwd=workdir)
    assert started.returncode == 0, started.stderr[-3000:]
    yield f"http://127.0.0.1:{port}", started.stdout + started.stderr, workdir
    stopped = tzray("down", cwd=workdir)
    assert stopped.returncode == 0, stopped.stderr[-3000:]


@pytest.fixture(scope="session")
def serve_url(tzray_up) -> str:
    return tzray_up[0]
