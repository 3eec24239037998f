"""`tzray`: start, stop and check the stack from a shell."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

STATE_FILE = Path(".tensorzero") / "tzray-up.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tzray", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start or join a Ray cluster and deploy the gateway")
    up.add_argument("--config", required=True, help="tensorzero.toml path or glob")
    up.add_argument("--port", type=int, default=8000, help="HTTP port of the Serve proxy (default 8000)")
    up.add_argument("--host", default="127.0.0.1", help="HTTP host of the Serve proxy")
    up.add_argument("--address", default=None, help="Ray cluster to join (default: the local one, started if absent)")
    up.add_argument(
        "--routers",
        choices=["deployments", "in_process"],
        default="in_process",
        help="run FunctionRouters inside the gateway (default, faster) or as their own deployments",
    )
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for /health")
    up.add_argument(
        "--gateway-replicas",
        type=int,
        default=min(os.cpu_count() or 1, 4),
        help="Gateway replicas (processes); default one per core, at most 4 (see bench/README.md)",
    )
    up.add_argument(
        "--no-ha-proxy",
        dest="ha_proxy",
        action="store_false",
        help="use Serve's Python HTTP proxy instead of HAProxy (when this command starts Ray)",
    )
    up.add_argument(
        "--no-throughput-optimized",
        dest="throughput_optimized",
        action="store_false",
        help="leave Serve's RAY_SERVE_THROUGHPUT_OPTIMIZED mode off (when this command starts Ray)",
    )
    up.add_argument(
        "--writer-resource",
        default=None,
        help="a custom Ray resource only the node with the durable disk offers: the ObservabilityWriter runs there",
    )
    up.add_argument(
        "--no-dashboard",
        dest="dashboard",
        action="store_false",
        help="start Ray without its dashboard (saves CPU on small machines)",
    )

    down = commands.add_parser("down", help="remove the gateway; stop Ray if `up` started it")
    down.add_argument("--address", default=None)

    status = commands.add_parser("status", help="replicas and their nodes, the writer's buffer, spool and target")
    status.add_argument("--address", default=None)

    keys = commands.add_parser("keys", help="API keys: create, list, disable (through the running stack)")
    keys.add_argument("--address", default=None)
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="make a key; it is printed once, then only its hash is kept")
    create.add_argument("--description", default="")
    create.add_argument("--expiration", default=None, help="RFC 3339 time after which the key stops working")
    key_commands.add_parser("list", help="every key: public id, state, description, dates")
    disable = key_commands.add_parser("disable", help="stop a key working on every replica (within the auth cache TTL)")
    disable.add_argument("public_id")

    check = commands.add_parser("validate", help="load a config and report problems")
    check.add_argument("--config", required=True)

    migrate = commands.add_parser(
        "migrate", help="create or update the ClickHouse schema (with chDB: only while the stack is down)"
    )
    migrate.add_argument("--config", required=True)

    args = parser.parse_args(argv)
    if args.command in ("status", "keys", "down"):
        _token_for_ray_clients()
    if args.command == "validate":
        return validate(args.config)
    if args.command == "up":
        return up_command(args)
    if args.command == "migrate":
        return migrate_command(args.config)
    if args.command == "status":
        from tensorzero_ray.serve.status import status_command

        return status_command(args.address)
    if args.command == "keys":
        from tensorzero_ray.serve.keys import keys_command

        return keys_command(args)
    return down_command(args)


def validate(pattern: str) -> int:
    from tensorzero_ray.config import ConfigError, load_config

    try:
        config = load_config(pattern)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"ok: {len(config.functions)} functions, {len(config.models)} models")
    return 0


def migrate_command(pattern: str) -> int:
    import asyncio

    from tensorzero_ray.config import ConfigError, load_config
    from tensorzero_ray.store import ClickHouseStore, StoreUnavailable
    from tensorzero_ray.store.dsn import redact
    from tensorzero_ray.store.observability import StorageSettings

    try:
        storage = StorageSettings.from_config(load_config(pattern))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if storage is None:
        print("observability is disabled (gateway.observability.enabled = false): nothing to migrate")
        return 0
    store = ClickHouseStore(storage.dsn)
    try:
        applied = asyncio.run(store.migrate())
    except StoreUnavailable as exc:
        print(f"migration failed: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"{redact(storage.dsn)}: applied {applied}" if applied else f"{redact(storage.dsn)}: up to date")
    return 0


def unreachable(address: str | None, timeout_s: float = 5.0) -> str | None:
    """Why a given `host:port` cluster address cannot be joined, found in seconds (Ray's own
    client would keep retrying for a minute); None when it answers or is not host:port."""
    if not address or address == "auto" or "://" in address:
        return None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return f"--address must be host:port (or auto), not `{address}`"
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        return f"the Ray cluster at {address} does not answer ({exc.strerror or exc}); is `ray start --head` running there?"
    return None


def _connect(args, token_auth: bool) -> bool:
    """Join a running cluster, or start a head node; True when this call started it."""
    import ray

    try:
        ray.init(address=args.address or "auto", logging_level="ERROR", log_to_driver=False)
        return False
    except ConnectionError:
        if args.address:
            raise
    if not token_auth:
        raise SystemExit(
            f"RAY_AUTH_MODE={os.environ['RAY_AUTH_MODE']}: `tzray up` does not start a Ray head without token "
            "authentication, since Ray listens on every network interface. Unset RAY_AUTH_MODE, or start Ray "
            "yourself and `tzray up` joins it."
        )
    env = dict(os.environ)
    # Jobs run their entrypoint through the head's shell: `ray job submit -- python jobs/x.py`
    # then finds this interpreter (the stack's, with its packages) first, venv active or not.
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, *(p for p in env.get("PATH", "").split(os.pathsep) if p != bin_dir)])
    if args.ha_proxy:
        # Serve's HAProxy ingress: HTTP goes from HAProxy straight to the Gateway replica,
        # skipping the Python proxy actor (see bench/README.md for what it saves).
        env.setdefault("RAY_SERVE_ENABLE_HA_PROXY", "1")
    if args.ha_proxy:
        # A Gateway replica that leaves stays open this long so load balancers can deregister
        # it. Ray's 30 s is for external balancers; the HAProxy on this node retries a refused
        # connection on another replica, so a redeploy or `tzray down` need not wait that long.
        env.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "3")
    if args.throughput_optimized:
        # User code on the replica's own event loop, buffered request logs, gRPC between
        # replicas: 35-40% less CPU per request and 3x the rate held (bench/README.md).
        env.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--head",
            "--disable-usage-stats",
            f"--include-dashboard={str(args.dashboard).lower()}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        env=env,
    )
    ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
    return True


def _token_for_ray_clients() -> None:
    """Commands that join a running head use the token `tzray up` made, as `ray job submit`
    does, from a shell that never set RAY_AUTH_MODE; set before Ray is imported, which reads it
    once."""
    if "RAY_AUTH_MODE" not in os.environ and (Path.home() / ".ray" / "auth_token").is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def _use_ray_token() -> bool:
    """Ray's control plane listens on every interface (Ray replaces a loopback node address
    with the machine's), so a head this command starts always asks for Ray's token, kept in
    ~/.ray/auth_token where Ray's own clients (`ray job submit`, `ray.init`) find it. False
    when the environment turned token authentication off."""
    if os.environ.setdefault("RAY_AUTH_MODE", "token") != "token":
        return False
    # Creates the token once; the command prints the token itself, so its output is dropped.
    subprocess.run(
        [sys.executable, "-m", "ray.scripts.scripts", "get-auth-token", "--generate"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return True


def up_command(args) -> int:
    # Before Ray is imported: its client reads the authentication mode once.
    token_auth = _use_ray_token()
    import httpx
    from ray import serve

    from tensorzero_ray.config import ConfigError, load_config
    from tensorzero_ray.serve.app import APP_NAME, build_application
    from tensorzero_ray.store.dsn import is_embedded, resolve_dsn

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.writer_resource is not None and not is_embedded(resolve_dsn(config.clickhouse.url)):
        print(
            "--writer-resource places the embedded database's one writer; with a ClickHouse server DSN "
            "every replica writes for itself: drop the option",
            file=sys.stderr,
        )
        return 2
    problem = unreachable(args.address)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    started_ray = _connect(args, token_auth)
    if args.writer_resource is not None:
        import ray

        if ray.cluster_resources().get(args.writer_resource, 0) <= 0:
            print(
                f"no node of the Ray cluster offers the resource `{args.writer_resource}` that --writer-resource "
                f"names; start the node with the durable disk with `ray start ... --resources='"
                f'{{"{args.writer_resource}": 1}}'
                "'` (cluster.yaml does so on the head)",
                file=sys.stderr,
            )
            return 2
    serve.start(http_options={"host": args.host, "port": args.port})
    application = build_application(
        config,
        routers=args.routers,
        gateway_replicas=args.gateway_replicas,
        writer_resource=args.writer_resource,
    )
    serve.run(application, name=APP_NAME, route_prefix="/")
    url = f"http://{args.host}:{args.port}"
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            print(f"gateway did not answer {url}/health within {args.timeout:.0f}s", file=sys.stderr)
            return 1
        time.sleep(0.25)
    _wait_for_old_replicas(APP_NAME, deadline=time.monotonic() + args.timeout)
    previous = _read_state()
    STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_text(json.dumps({"started_ray": started_ray or previous.get("started_ray", False), "url": url}))
    print(f"tensorzero-ray gateway is up at {url}")
    example = '{"model_name": "dummy::good", "input": {"messages": [{"role": "user", "content": "Hello"}]}}'
    print(f"  try: curl -s {url}/inference -H 'content-type: application/json' -d '{example}'")
    print(f"  web UI: {url}/ui/")
    if started_ray and token_auth:
        print(
            "  Ray runs with token authentication (~/.ray/auth_token); jobs: "
            "RAY_AUTH_MODE=token .venv/bin/ray job submit -- python jobs/<job>.py ..."
        )
    return 0


def _wait_for_old_replicas(app_name: str, deadline: float) -> None:
    """A redeploy answers from the new replicas while the old ones are still stopping and
    still hold their CPUs; return once they are gone, so a job started next finds the CPUs
    a machine with only the stack would have."""
    from ray import serve

    while time.monotonic() < deadline:
        app = serve.status().applications.get(app_name)
        if app is None:
            return
        leaving = sum(
            count
            for deployment in app.deployments.values()
            for state, count in deployment.replica_states.items()
            if str(getattr(state, "value", state)) in ("STOPPING", "STARTING", "UPDATING", "RECOVERING")
        )
        if not leaving:
            return
        time.sleep(0.5)


def down_command(args) -> int:
    import ray
    from ray import serve

    from tensorzero_ray.serve.app import APP_NAME

    state = _read_state()
    try:
        ray.init(address=args.address or "auto", logging_level="ERROR", log_to_driver=False)
    except ConnectionError:
        print("no Ray cluster is running")
        STATE_FILE.unlink(missing_ok=True)
        return 0
    from ray.serve.exceptions import RayServeException

    try:
        serve.delete(APP_NAME)
        serve.shutdown()
    except RayServeException:
        pass  # Serve is already gone; Ray itself may still need stopping
    ray.shutdown()
    if state.get("started_ray"):
        subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "stop"], check=False, stdout=subprocess.DEVNULL)
    STATE_FILE.unlink(missing_ok=True)
    print("tensorzero-ray gateway is down")
    return 0


def _read_state() -> dict:
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return {}


if __name__ == "__main__":
    sys.exit(main())
