"""What feedback needs to know about inferences acknowledged moments ago, kept in memory by the
writer as their rows pass through it, so feedback never waits for the database to catch up."""

from __future__ import annotations

from collections import OrderedDict

INFERENCE_TABLES = {"ChatInference": "chat", "JsonInference": "json"}
# The columns feedback reads about its target (function, and the tools or output schema a
# demonstration is checked against).
TARGET_COLUMNS = ("function_name", "variant_name", "function_type", "output_schema", "dynamic_tools", "allowed_tools")


class RecentInferences:
    def __init__(self, capacity: int = 200_000):
        self.capacity = capacity
        self._inferences: OrderedDict[str, dict] = OrderedDict()
        self._episodes: OrderedDict[str, dict] = OrderedDict()

    def add(self, table: str, rows: list[dict]) -> None:
        function_type = INFERENCE_TABLES.get(table)
        if function_type is None:
            return
        for row in rows:
            target = {
                "function_name": row["function_name"],
                "variant_name": row["variant_name"],
                "function_type": function_type,
                "output_schema": row.get("output_schema"),
                "dynamic_tools": row.get("dynamic_tools") or [],
                "allowed_tools": row.get("allowed_tools"),
            }
            _put(self._inferences, str(row["id"]), target, self.capacity)
            _put(self._episodes, str(row["episode_id"]), target, self.capacity)

    def find(self, target_id: str, level: str) -> dict | None:
        return (self._inferences if level == "inference" else self._episodes).get(target_id)

    def __len__(self) -> int:
        return len(self._inferences)


def _put(index: OrderedDict, key: str, value: dict, capacity: int) -> None:
    index[key] = value
    index.move_to_end(key)
    while len(index) > capacity:
        index.popitem(last=False)
