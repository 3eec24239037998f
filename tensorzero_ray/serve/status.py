"""`tzray status`: the stack as it runs on the cluster, from a shell. Each deployment's
replicas with the node each one runs on, and the view of storage (the ClickHouse target, rows
buffered, rows spooled while ClickHouse was away) from the ObservabilityWriter, or with a
ClickHouse server, where each replica writes for itself, from one Gateway replica. The same
deployments and nodes show in the Ray dashboard's Serve page."""

from __future__ import annotations

from collections import Counter, defaultdict

from tensorzero_ray.serve.app import APP_NAME


def status_command(address: str | None) -> int:
    import ray
    from ray import serve
    from ray.util.state import list_actors

    try:
        ray.init(address=address or "auto", logging_level="ERROR", log_to_driver=False)
    except ConnectionError:
        print("no Ray cluster is running")
        return 1
    application = serve.status().applications.get(APP_NAME)
    if application is None:
        print("tensorzero-ray is not deployed on this cluster (`tzray up` deploys it)")
        return 1
    addresses = {node["NodeID"]: node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]}
    placed: dict[str, list[str]] = defaultdict(list)
    prefix = f"ServeReplica:{APP_NAME}:"
    try:
        actors = list_actors(filters=[("state", "=", "ALIVE")], limit=10_000, raise_on_missing_output=False)
    except Exception:  # noqa: BLE001 - Ray's state API lives in its dashboard, which may be off
        actors = []
        print("(Ray's dashboard is off, so where each replica runs is not known: start Ray with it to see)")
    for actor in actors:
        if actor.class_name.startswith(prefix):
            placed[actor.class_name.removeprefix(prefix)].append(addresses.get(actor.node_id, actor.node_id[:8]))
    print(f"application {APP_NAME}: {_name(application.status)} on {len(addresses)} node(s)")
    for name, deployment in sorted(application.deployments.items()):
        states = ", ".join(f"{count} {_name(state).lower()}" for state, count in deployment.replica_states.items())
        nodes = ", ".join(f"{ip} x{count}" for ip, count in sorted(Counter(placed[name]).items()))
        print(f"  {name}: {_name(deployment.status).lower()}; replicas {states or 'none'}; nodes {nodes or '-'}")
    # The one writer knows everything stored; with a ClickHouse server each replica writes for
    # itself, and one Gateway replica answers for its own buffer and spool.
    single = "ObservabilityWriter" in application.deployments
    asked = serve.get_deployment_handle("ObservabilityWriter" if single else "Gateway", APP_NAME)
    try:
        state = (asked.status if single else asked.storage_status).remote().result(timeout_s=30)
    except Exception as exc:  # noqa: BLE001 - a writer that cannot answer is what status should say
        print(f"storage: the {'ObservabilityWriter' if single else 'Gateway'} does not answer ({type(exc).__name__})")
        return 1
    if state is None:
        print("storage: observability is off (nothing is stored)")
        return 0
    whose = "the writer" if single else "one Gateway replica"
    print(
        f"storage: {state['target']} ({state['clickhouse']}); {state['writers']}; {whose} holds "
        f"{state['buffered_rows']} row(s) buffered, {state['spooled_rows']} spooled"
    )
    return 0


def _name(state) -> str:
    """Serve's states are enums in some places and plain strings in others."""
    return str(getattr(state, "value", state))
