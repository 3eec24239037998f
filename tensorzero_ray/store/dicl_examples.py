"""DICL's examples in ClickHouse: the nearest to an embedding (cosine distance), and writing
new ones (the `dicl` job)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Query = Callable[[str, dict], Awaitable[list[dict[str, Any]]]]

NEAREST_SQL = (
    "SELECT input, output, cosineDistance(embedding, {embedding:Array(Float32)}) AS distance "
    "FROM DynamicInContextLearningExample WHERE function_name = {function:String} AND variant_name = {variant:String} "
    "{within}ORDER BY distance ASC LIMIT {k:UInt32}"
)


async def nearest_examples(
    query: Query, function_name: str, variant_name: str, embedding: list[float], k: int, max_distance: float | None
) -> list[tuple[str, str]]:
    within = "AND distance <= {max_distance:Float64} " if max_distance is not None else ""
    rows = await query(
        NEAREST_SQL.replace("{within}", within),
        {
            "embedding": embedding,
            "function": function_name,
            "variant": variant_name,
            "k": k,
            "max_distance": max_distance if max_distance is not None else 0.0,
        },
    )
    return [(row["input"], row["output"]) for row in rows]
