"""`jobs/dicl.py`: the `dicl` optimizer as a Ray job. It curates a function's stored inferences
(optionally only those a metric approves), embeds their inputs in parallel Ray tasks with
bounded concurrency through the gateway's embeddings endpoint, writes them as examples of a
new DICL variant, and prints the variant to paste into the config. Exit status 2 when it
cannot start (bad names, no examples, not enough CPUs)."""

from __future__ import annotations

import argparse
import sys

import httpx
import orjson

PAGE = 1000


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dicl", description=__doc__)
    p.add_argument("--gateway-url", default="http://127.0.0.1:8000")
    p.add_argument("--function-name", required=True)
    p.add_argument("--variant-name", required=True, help="the DICL variant the examples are for")
    p.add_argument("--embedding-model", required=True, help="an embedding model of the config, or provider::model")
    p.add_argument("--model", required=True, help="the model the DICL variant will call")
    p.add_argument("--k", type=int, default=10, help="examples per request in the printed variant")
    p.add_argument("--metric", help="only inferences with this boolean metric true (or float metric >= --threshold)")
    p.add_argument("--metric-type", choices=("boolean", "float"), default="boolean")
    p.add_argument("--threshold", type=float, default=0.0)
    p.add_argument("--max-examples", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=32, help="inputs per embeddings request")
    p.add_argument("--workers", type=int, default=2, help="embedding tasks at a time")
    p.add_argument("--cpus-per-worker", type=float, default=0.25)
    return p


def curate(http: httpx.Client, args) -> list[dict]:
    """Stored inferences of the function as (input, output) examples; tool calls are refused,
    as TensorZero's optimizer refuses them."""
    filters = None
    if args.metric and args.metric_type == "boolean":
        filters = {"type": "boolean_metric", "metric_name": args.metric, "value": True}
    elif args.metric:
        filters = {
            "type": "float_metric",
            "metric_name": args.metric,
            "value": args.threshold,
            "comparison_operator": ">=",
        }
    found: list[dict] = []
    while len(found) < args.max_examples:
        body = {
            "function_name": args.function_name,
            "limit": min(PAGE, args.max_examples - len(found)),
            "offset": len(found),
        }
        if filters:
            body["filters"] = filters
        answer = http.post("/v1/inferences/list_inferences", json=body)
        if answer.status_code != 200:
            raise SetupError(answer.json().get("error", answer.text))
        page = answer.json()["inferences"]
        found += page
        if len(page) < body["limit"]:
            break
    examples = []
    for inference in found:
        output = inference.get("output")
        if isinstance(output, list) and any(block.get("type") == "tool_call" for block in output):
            continue
        examples.append({"input": inference["input"], "output": output})
    return examples


def embed_batch(gateway_url: str, model: str, texts: list[str]) -> list[list[float]]:
    with httpx.Client(base_url=gateway_url, timeout=300) as http:
        answer = http.post(
            "/openai/v1/embeddings", json={"model": f"tensorzero::embedding_model_name::{model}", "input": texts}
        )
        if answer.status_code != 200:
            raise RuntimeError(f"embedding failed: {answer.status_code} {answer.text[:500]}")
        data = sorted(answer.json()["data"], key=lambda d: d["index"])
        return [d["embedding"] for d in data]


def embed_on_ray(args, texts: list[str]) -> list[list[float]]:
    import ray

    remote = ray.remote(num_cpus=args.cpus_per_worker, max_retries=1)(embed_batch)
    batches = [texts[i : i + args.batch_size] for i in range(0, len(texts), args.batch_size)]
    results: dict[int, list[list[float]]] = {}
    pending: dict = {}
    queue = list(enumerate(batches))
    while queue or pending:
        while queue and len(pending) < args.workers:
            index, batch = queue.pop(0)
            pending[remote.remote(args.gateway_url, args.embedding_model, batch)] = index
        ready, _ = ray.wait(list(pending), num_returns=1)
        results[pending.pop(ready[0])] = ray.get(ready[0])
        print(f"embedded {len(results)}/{len(batches)} batches", file=sys.stderr, flush=True)
    return [vector for index in range(len(batches)) for vector in results[index]]


def variant_snippet(args) -> str:
    return (
        f"[functions.{args.function_name}.variants.{args.variant_name}]\n"
        'type = "experimental_dynamic_in_context_learning"\n'
        f'embedding_model = "{args.embedding_model}"\n'
        f'model = "{args.model}"\n'
        f"k = {args.k}\n"
    )


class SetupError(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.k < 1 or args.batch_size < 1 or args.workers < 1 or args.max_examples < 1:
        print("error: --k, --batch-size, --workers and --max-examples must be at least 1", file=sys.stderr)
        return 2
    from tensorzero_ray.cluster import cpu_shortfall

    short = cpu_shortfall(args.workers, args.cpus_per_worker, "--workers or --cpus-per-worker")
    if short is not None:
        print(f"error: not enough CPUs for the embedding tasks: {short}", file=sys.stderr)
        return 2
    with httpx.Client(base_url=args.gateway_url, timeout=300) as http:
        try:
            examples = curate(http, args)
        except SetupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except httpx.HTTPError as exc:
            print(f"error: could not reach the gateway at {args.gateway_url}: {exc}", file=sys.stderr)
            return 2
        if not examples:
            print(f"error: no stored inferences of `{args.function_name}` to learn from", file=sys.stderr)
            return 2
        texts = [orjson.dumps(e["input"]).decode() for e in examples]
        vectors = embed_on_ray(args, texts)
        written = 0
        for start in range(0, len(examples), 500):
            chunk = [
                {**example, "embedding": vector}
                for example, vector in zip(examples[start : start + 500], vectors[start : start + 500])
            ]
            answer = http.post(
                "/internal/dicl/examples",
                json={"function_name": args.function_name, "variant_name": args.variant_name, "examples": chunk},
            )
            if answer.status_code != 200:
                print(f"error: writing examples failed: {answer.text}", file=sys.stderr)
                return 1
            written += answer.json()["written"]
    print(f"wrote {written} examples of `{args.function_name}` for variant `{args.variant_name}` "
          f"({len(vectors[0])}-dimensional embeddings from `{args.embedding_model}`)")  # fmt: skip
    print("Add this variant to your config:\n")
    print(variant_snippet(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
