"""A large replay as a Ray job: page through the stored inferences, send them to the gateway's
replay endpoint in batches with a bounded number in flight, write each comparison to a JSONL
file as it arrives, and show a progress bar in the job's logs (`ray job logs`, dashboard).

    ray job submit -- python jobs/replay.py --gateway http://127.0.0.1:8000 \
        --function chat --variant safe --limit 5000 --output replay.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import orjson
from tqdm import tqdm

from tensorzero_ray.client import AsyncTensorZeroRayClient, GatewayError

PAGE_SIZE = 1000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="replay", description="Replay stored inferences on another variant or model.")
    parser.add_argument("--gateway", default=os.environ.get("TENSORZERO_GATEWAY_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--function", help="replay this function's inferences (with --filters, --variant-filter)")
    parser.add_argument("--ids-file", type=Path, help="or: a file of inference ids, one per line")
    parser.add_argument("--filters", type=orjson.loads, help="an InferenceFilter as JSON (as in list_inferences)")
    parser.add_argument("--variant-filter", help="only inferences served by this variant")
    parser.add_argument("--limit", type=int, default=1000, help="at most this many inferences (newest first)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--variant", help="the variant to replay on")
    target.add_argument("--model", help="a model to use in place of each inference's own (dry run only)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=16, help="inferences in flight at once")
    parser.add_argument("--store", action="store_true", help="store the new inferences (default: dry run)")
    parser.add_argument("--output", type=Path, required=True, help="JSONL file of comparisons")
    args = parser.parse_args(argv)
    if (args.function is None) == (args.ids_file is None):
        parser.error("give exactly one of --function or --ids-file")
    return args


async def _ids(client: AsyncTensorZeroRayClient, args: argparse.Namespace) -> list[str]:
    if args.ids_file is not None:
        return [line.strip() for line in args.ids_file.read_text().splitlines() if line.strip()][: args.limit]
    ids: list[str] = []
    while len(ids) < args.limit:
        page = await client.list_inferences(
            function_name=args.function,
            variant_name=args.variant_filter,
            filters=args.filters,
            output_source="none",
            limit=min(PAGE_SIZE, args.limit - len(ids)),
            offset=len(ids),
        )
        ids += [item.inference_id for item in page]
        if len(page) < PAGE_SIZE:
            break
    return ids


async def run(args: argparse.Namespace) -> dict[str, int]:
    async with AsyncTensorZeroRayClient(args.gateway) as client:
        ids = await _ids(client, args)
        batches = [ids[i : i + args.batch_size] for i in range(0, len(ids), args.batch_size)]
        per_batch = min(args.concurrency, args.batch_size)
        gate = asyncio.Semaphore(max(1, args.concurrency // per_batch))
        counts = {"total": len(ids), "succeeded": 0, "failed": 0}
        args.output.parent.mkdir(parents=True, exist_ok=True)
        target = {"variant_name": args.variant} if args.variant else {"model_name": args.model}
        with (
            args.output.open("wb") as out,
            tqdm(total=len(ids), desc="replay", unit="inference", file=sys.stderr) as bar,
        ):

            async def send(batch: list[str]) -> None:
                async with gate:
                    try:
                        result = await client.replay(
                            inference_ids=batch, dryrun=not args.store, concurrency=per_batch, **target
                        )
                        rows = [c.model_dump(mode="json") for c in result.comparisons]
                    except GatewayError as exc:
                        rows = [{"inference_id": i, "error": exc.message} for i in batch]
                for row in rows:
                    out.write(orjson.dumps(row) + b"\n")
                    counts["failed" if row.get("error") else "succeeded"] += 1
                bar.update(len(rows))

            await asyncio.gather(*(send(batch) for batch in batches))
    return counts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    counts = asyncio.run(run(args))
    print(orjson.dumps({**counts, "output": str(args.output), "dryrun": not args.store}).decode())
    return 0 if counts["succeeded"] or not counts["total"] else 1
