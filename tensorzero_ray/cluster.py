"""The Ray cluster as jobs see it: it is shared with the running stack, so a job checks that
the CPUs its workers ask for are free and says at once what is missing otherwise."""

from __future__ import annotations


def cpu_shortfall(workers: int, cpus_per_worker: float, lower_with: str) -> str | None:
    """None when `workers` x `cpus_per_worker` CPUs are free now, else what is missing and
    which options lower it."""
    import ray

    if not ray.is_initialized():
        ray.init(address="auto", logging_level="ERROR")
    needed = workers * cpus_per_worker
    free = ray.available_resources().get("CPU", 0.0)
    if free + 1e-9 >= needed:
        return None
    total = ray.cluster_resources().get("CPU", 0.0)
    return (
        f"{workers} worker(s) x {cpus_per_worker:g} CPU = {needed:g}, {free:g} free of {total:g} "
        f"(lower it with {lower_with})"
    )
