"""How fast the UI's pages render over a large store, next to the store query each page is
built on (the direct call):

    .venv/bin/python bench/ui_pages.py --inferences 100000 --output bench/results/ui-100k.json

Seeds a fresh embedded store with N inferences of the quickstart's functions spread over a
week (SQL, in the database: ids, episodes, inputs, outputs, model inferences, and thumbs-up
feedback on a third of the chat inferences), then renders each page a few times in process
and prints the median time per page and its ratio to the page's main query."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from tensorzero_ray.api.gateway import config_hash
from tensorzero_ray.config import load_config
from tensorzero_ray.store.inference_queries import list_inferences_sql
from tensorzero_ray.store.observability import ObservabilityClient, ObservabilityWriter, StorageSettings
from tensorzero_ray.types.stored import ListInferencesRequest
from tensorzero_ray.ui.app import create_ui_app

ROOT = Path(__file__).resolve().parent.parent
WEEK_MS = 7 * 86400 * 1000

# A UUIDv7 from a millisecond timestamp expression `ms` and the row number, in SQL.
UUID7 = (
    "toUUID(concat(substring(h, 1, 8), '-', substring(h, 9, 4), '-', substring(h, 13, 4), '-', "
    "substring(h, 17, 4), '-', substring(h, 21, 12)))"
)
HEX = (
    "lower(concat(leftPad(hex(toUInt64({ms})), 12, '0'), '7', leftPad(hex(number % 4096), 3, '0'), "
    "'8', leftPad(hex(cityHash64(number, {salt}) % 4096), 3, '0'), leftPad(hex(cityHash64({salt}, number)), 16, '0')))"
)


def uuid_expr(ms: str, salt: int) -> str:
    return f"(WITH {HEX.format(ms=ms, salt=salt)} AS h SELECT {UUID7})"


async def seed(observability: ObservabilityClient, count: int) -> None:
    start_ms = int(time.time() * 1000) - WEEK_MS
    ms = f"{start_ms} + intDiv(number * {WEEK_MS}, {count})"
    chat_rows = count * 4 // 5
    inference_id = f"{uuid_expr(ms, 1)}"
    episode_id = f"{uuid_expr(f'{start_ms} + intDiv(intDiv(number, 3) * 3 * {WEEK_MS}, {count})', 2)}"
    variant = "multiIf(number % 10 < 7, 'baseline', number % 10 < 9, 'concise', 'safe')"
    model = "multiIf(number % 10 < 7, 'fast', number % 10 < 9, 'flaky', 'dummy::alternate')"
    await observability.command(
        f"""INSERT INTO ChatInference (id, function_name, variant_name, episode_id, input, output, inference_params,
            processing_time_ms, tags)
        SELECT {inference_id}, 'chat', {variant}, {episode_id},
            concat('{{"system":{{"assistant_name":"Alfred"}},"messages":[{{"role":"user","content":[{{"type":"text","text":"Question number ', toString(number), ' about Ray Serve and ClickHouse"}}]}}]}}'),
            '[{{"type":"text","text":"Megumin gleefully chanted her spell, unleashing a thunderous explosion that lit up the sky."}}]',
            '{{"chat_completion":{{}}}}', 3 + number % 40, map('user', concat('u-', toString(number % 500)))
        FROM numbers({chat_rows})"""  # noqa: E501
    )
    await observability.command(
        f"""INSERT INTO JsonInference (id, function_name, variant_name, episode_id, input, output, output_schema,
            inference_params, processing_time_ms)
        SELECT {uuid_expr(ms, 3)}, 'extract', 'v1', {uuid_expr(ms, 4)},
            '{{"messages":[{{"role":"user","content":[{{"type":"template","name":"user","arguments":{{"text":"Ada"}}}}]}}]}}',
            '{{"raw":"{{\\\\"answer\\\\":\\\\"Hello\\\\"}}","parsed":{{"answer":"Hello"}}}}', '{{}}', '{{"chat_completion":{{}}}}',
            2 + number % 30
        FROM numbers({count - chat_rows})"""  # noqa: E501
    )
    await observability.command(
        f"""INSERT INTO ModelInference (id, inference_id, raw_request, raw_response, model_name, model_provider_name,
            input_tokens, output_tokens, response_time_ms, input_messages, output, function_name, variant_name)
        SELECT {uuid_expr(ms, 5)}, {inference_id}, '{{}}', '{{}}', {model}, 'primary', 10 + number % 50,
            1 + number % 20, 2 + number % 30, '[]', '[]', 'chat', {variant}
        FROM numbers({chat_rows})"""
    )
    await observability.command(
        f"""INSERT INTO BooleanMetricFeedback (id, target_id, metric_name, value)
        SELECT {uuid_expr(ms, 6)}, {inference_id}, 'thumbs_up', cityHash64(number, 9) % 100 < (60 + number % 10 * 2)
        FROM numbers({chat_rows}) WHERE number % 3 = 0"""
    )


def timed_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 1)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inferences", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    config = load_config(str(ROOT / "config" / "quickstart" / "tensorzero.toml"))
    with tempfile.TemporaryDirectory() as tmp:
        storage = StorageSettings(dsn=f"chdb://{tmp}/clickhouse", spool_path=f"{tmp}/spool.jsonl", required=True)
        writer = ObservabilityWriter(storage)
        await writer.start()
        observability = ObservabilityClient(storage, writer)
        started = time.monotonic()
        await seed(_Commands(writer), args.inferences)
        seeded_s = time.monotonic() - started
        stored = (
            await observability.query(
                "SELECT (SELECT count() FROM ChatInference) + (SELECT count() FROM JsonInference) AS n, "
                "(SELECT count() FROM BooleanMetricFeedback) AS feedback"
            )
        )[0]
        newest = (
            await observability.query(
                "SELECT toString(id) AS newest FROM ChatInference ORDER BY toUInt128(id) DESC LIMIT 1"
            )
        )[0]["newest"]  # noqa: E501
        app = create_ui_app(config, observability, config_hash=config_hash(config))
        liked = {"metric": "thumbs_up", "metric_value": "true", "function": "chat"}
        pages = {
            "home": ("/", None),
            "inferences": ("/observability/inferences", ListInferencesRequest(limit=20)),
            "inferences, metric filter": (
                "/observability/inferences?" + "&".join(f"{k}={v}" for k, v in liked.items()),
                ListInferencesRequest(
                    function_name="chat",
                    limit=20,
                    filters={"type": "boolean_metric", "metric_name": "thumbs_up", "value": True},
                ),
            ),
            "inference": (f"/observability/inferences/{newest}", None),
            "episodes": ("/observability/episodes", None),
            "function": ("/observability/functions/chat?metric=thumbs_up", None),
            "models": ("/observability/models", None),
            "dataset builder preview": (
                "/datasets/builder?preview=1&" + "&".join(f"{k}={v}" for k, v in liked.items()),
                None,
            ),  # noqa: E501
        }
        results = {}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as client:
            for name, (path, direct) in pages.items():
                samples, status = [], None
                for _ in range(args.repeat + 1):  # the first is a warm-up
                    t0 = time.perf_counter()
                    response = await client.get(path)
                    samples.append(time.perf_counter() - t0)
                    status = response.status_code
                entry = {"path": "/ui" + path, "status": status, "page_ms": timed_ms(samples[1:])}
                if direct is not None:
                    sql, params, _ = list_inferences_sql(config, direct)
                    query_samples = []
                    for _ in range(args.repeat):
                        t0 = time.perf_counter()
                        await observability.query(sql, params)
                        query_samples.append(time.perf_counter() - t0)
                    entry["direct_query_ms"] = timed_ms(query_samples)
                    entry["page_over_query"] = round(entry["page_ms"] / max(entry["direct_query_ms"], 0.1), 2)
                results[name] = entry
                line = f"{name:28s} {entry['status']} {entry['page_ms']:8.1f} ms"
                if direct is not None:
                    line += f"   query {entry['direct_query_ms']:.1f} ms, x{entry['page_over_query']}"
                print(line)
        report = {
            "inferences": int(stored["n"]),
            "feedback": int(stored["feedback"]),
            "seed_seconds": round(seeded_s, 1),
            "pages": results,
        }
        if args.output:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(report, indent=2) + "\n")
        await writer.close()


class _Commands:
    """Seeding statements go straight to the writer's store (the only chDB owner)."""

    def __init__(self, writer: ObservabilityWriter):
        self.writer = writer

    async def command(self, sql: str) -> None:
        await self.writer.store.command(sql)


if __name__ == "__main__":
    asyncio.run(main())
