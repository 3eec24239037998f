"""`jobs/batch_inference.py`: a file of inference requests run through the gateway's normal
`/inference` path as a Ray job, for any model (self-hosted ones too) and without a provider
batch API. Shards go to Ray tasks, at most `--workers` at a time, each sending at most
`--concurrency` requests at once, so the whole job never has more than workers x concurrency
requests in flight. Every inference is stored as usual. Results come back in input order as
JSONL; a progress bar counts finished requests.

Input: one JSON object per line, an `/inference` body (`input`, and `function_name` or
`model_name` unless `--function-name` supplies it). Exit status 2 when it cannot start (a bad
line, not enough CPUs, no gateway), 1 when some requests failed, 0 otherwise."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

# Worth another try: the gateway shed load, or a provider (or the path to it) failed.
RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="batch_inference", description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, type=Path, help="JSONL: one /inference request body per line")
    p.add_argument("--output", type=Path, help="JSONL results in input order (default: <input>.results.jsonl)")
    p.add_argument("--gateway-url", default="http://127.0.0.1:8000")
    p.add_argument("--function-name", help="for lines that name no function_name or model_name")
    p.add_argument("--variant-name", help="pin this variant on lines that do not pin one")
    p.add_argument("--workers", type=int, default=2, help="Ray tasks at a time")
    p.add_argument("--cpus-per-worker", type=float, default=0.25)
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight per worker")
    p.add_argument("--shard-size", type=int, default=64, help="requests per Ray task")
    p.add_argument("--retries", type=int, default=2, help="retries of a request that failed with 408/429/5xx")
    return p


class InputError(Exception):
    pass


def read_requests(path: Path, function_name: str | None, variant_name: str | None, run_tag: str) -> list[dict]:
    """Every line checked before anything runs: a bad line is named, not skipped."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    bodies = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            body = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: not JSON ({exc})") from None
        if not isinstance(body, dict) or "input" not in body:
            raise InputError(f"{path}:{number}: each line must be an object with an `input`")
        if body.get("stream"):
            raise InputError(f"{path}:{number}: `stream` is not supported in a batch")
        if "function_name" not in body and "model_name" not in body:
            if function_name is None:
                raise InputError(f"{path}:{number}: no `function_name` or `model_name`, and no --function-name")
            body["function_name"] = function_name
        if variant_name is not None and "model_name" not in body:
            body.setdefault("variant_name", variant_name)
        body["tags"] = {**(body.get("tags") or {}), "batch_run": run_tag}
        bodies.append(body)
    if not bodies:
        raise InputError(f"{path} holds no requests")
    return bodies


async def _send(http: httpx.AsyncClient, body: dict, retries: int) -> dict[str, Any]:
    attempt = 0
    while True:
        try:
            response = await http.post("/inference", json=body)
        except httpx.HTTPError as exc:
            status, error = None, f"could not reach the gateway: {exc!r}"
        else:
            if response.status_code == 200:
                return {"status": 200, "response": response.json()}
            status = response.status_code
            try:
                error = response.json().get("error", response.text)
            except ValueError:
                error = response.text
        if attempt >= retries or (status is not None and status not in RETRYABLE):
            return {"status": status, "error": error}
        await asyncio.sleep(0.25 * 2**attempt)
        attempt += 1


def run_shard(gateway_url: str, shard: list[tuple[int, dict]], concurrency: int, retries: int) -> list[dict]:
    """One Ray task: its requests, at most `concurrency` at a time."""

    async def go() -> list[dict]:
        gate = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(base_url=gateway_url, timeout=900, limits=limits) as http:

            async def one(index: int, body: dict) -> dict:
                async with gate:
                    return {"index": index, **(await _send(http, body, retries))}

            return await asyncio.gather(*(one(index, body) for index, body in shard))

    return asyncio.run(go())


def run_on_ray(args, bodies: list[dict]) -> list[dict]:
    import ray
    from tqdm import tqdm

    remote = ray.remote(num_cpus=args.cpus_per_worker, max_retries=0)(run_shard)
    indexed = list(enumerate(bodies))
    queue = [indexed[i : i + args.shard_size] for i in range(0, len(indexed), args.shard_size)]
    results: list[dict] = []
    pending: dict = {}
    with tqdm(total=len(bodies), unit="inference", file=sys.stderr, mininterval=0.5) as bar:
        while queue or pending:
            while queue and len(pending) < args.workers:
                shard = queue.pop(0)
                pending[remote.remote(args.gateway_url, shard, args.concurrency, args.retries)] = len(shard)
            ready, _ = ray.wait(list(pending), num_returns=1)
            pending.pop(ready[0])
            done = ray.get(ready[0])
            results += done
            bar.update(len(done))
    return sorted(results, key=lambda result: result["index"])


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if min(args.workers, args.concurrency, args.shard_size) < 1 or args.retries < 0:
        print("error: --workers, --concurrency and --shard-size must be at least 1", file=sys.stderr)
        return 2
    run_tag = str(uuid.uuid4())
    try:
        bodies = read_requests(args.input, args.function_name, args.variant_name, run_tag)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from tensorzero_ray.cluster import cpu_shortfall

    short = cpu_shortfall(args.workers, args.cpus_per_worker, "--workers or --cpus-per-worker")
    if short is not None:
        print(f"error: not enough CPUs for the batch tasks: {short}", file=sys.stderr)
        return 2
    try:
        httpx.get(args.gateway_url.rstrip("/") + "/status", timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        print(f"error: could not reach the gateway at {args.gateway_url}: {exc}", file=sys.stderr)
        return 2
    results = run_on_ray(args, bodies)
    output = args.output or args.input.with_suffix(".results.jsonl")
    output.write_bytes(b"".join(orjson.dumps(result) + b"\n" for result in results))
    failed = [r for r in results if r["status"] != 200]
    print(
        f"{len(results)} inferences: {len(results) - len(failed)} succeeded, {len(failed)} failed; "
        f"results in {output}; stored inferences carry the tag batch_run={run_tag}"
    )
    for result in failed[:5]:
        print(f"  line {result['index'] + 1}: {result['status']} {result['error']}", file=sys.stderr)
    return 1 if failed else 0
