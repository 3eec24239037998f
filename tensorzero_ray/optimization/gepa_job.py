"""The GEPA job the gateway submits to Ray: it reads its task from the gateway, runs GEPA
through the gateway's inference and feedback endpoints, and reports progress, the result or
the error back to the task."""

from __future__ import annotations

import argparse
import asyncio
import sys

import httpx

from tensorzero_ray.evaluations.catalog import EvaluationSetupError
from tensorzero_ray.optimization.gepa import Gepa, GepaError
from tensorzero_ray.types.optimization import GepaTask


async def run(gateway_url: str, task_id: str) -> int:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=600) as http:
        path = f"/internal/optimization/tasks/{task_id}"
        found = await http.get(path)
        found.raise_for_status()
        task = GepaTask.model_validate(found.json()["task"])

        async def report(**fields) -> None:
            answer = await http.post(path, json=fields)
            answer.raise_for_status()

        async def progress(state: dict) -> None:
            print(f"GEPA {task_id}: {state}", flush=True)
            await report(status="pending", progress=state)

        try:
            result = await Gepa(http, task_id, task, progress).run()
        except (GepaError, EvaluationSetupError) as exc:
            await report(status="error", error=str(exc))
            print(f"GEPA {task_id} failed: {exc}", file=sys.stderr)
            return 1
        except Exception as exc:  # noqa: BLE001 - a task must never stay pending after its job died
            await report(status="error", error=f"{type(exc).__name__}: {exc}")
            raise
        await report(status="completed", **result)
        print(f"GEPA {task_id}: completed with {len(result['variants'])} new variant(s)")
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gepa_job", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway-url", required=True)
    parser.add_argument("--task-id", required=True)
    args = parser.parse_args(argv)
    return asyncio.run(run(args.gateway_url, args.task_id))


if __name__ == "__main__":
    sys.exit(main())
