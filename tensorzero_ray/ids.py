"""UUIDv7 ids: creation and the gateway's episode-id rules (spec §2.5, §1.1)."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from datetime import datetime, timezone

from tensorzero_ray.errors import InvalidRequest

# Episode ids past now + 10^10 s belong to workflow evaluations and are exempt from the
# future check (spec §13.11).
WORKFLOW_EVALUATION_OFFSET_S = 10_000_000_000
_EARLIEST_MS = int(datetime(2020, 1, 23, tzinfo=timezone.utc).timestamp() * 1000)

_lock = threading.Lock()
# Seeded from the OS once per process: ids need to be unique, not secret, and a syscall per
# id showed up in the gateway's profile.
_random = random.Random(os.urandom(32))
_last_ms = 0
_counter = 0


def uuid7(timestamp_ms: int | None = None) -> uuid.UUID:
    """A UUIDv7 that sorts by creation time, monotonic within a process."""
    global _last_ms, _counter
    with _lock:
        ms = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        if timestamp_ms is None and ms <= _last_ms:
            ms = _last_ms
            _counter += 1
            if _counter >= 1 << 12:
                ms += 1
                _counter = 0
        else:
            _counter = _random.getrandbits(11)
        if timestamp_ms is None:
            _last_ms = ms
        rand_b = _random.getrandbits(62)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (_counter & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand_b
    return uuid.UUID(int=value)


def uuid7_timestamp_ms(value: uuid.UUID) -> int:
    return value.int >> 80


def is_workflow_episode(value: uuid.UUID) -> bool:
    """Workflow-evaluation episodes are dated 10^10 s ahead; nothing else is."""
    return uuid7_timestamp_ms(value) >= time.time() * 1000 + (WORKFLOW_EVALUATION_OFFSET_S - 3600) * 1000


def workflow_episode_id() -> uuid.UUID:
    return uuid7(int(time.time() * 1000) + WORKFLOW_EVALUATION_OFFSET_S * 1000)


def validate_episode_id(raw: str | uuid.UUID) -> uuid.UUID:
    try:
        value = raw if isinstance(raw, uuid.UUID) else uuid.UUID(str(raw))
    except ValueError as exc:
        raise InvalidRequest(f"Invalid Episode ID: {exc}") from None
    if value.version != 7:
        raise InvalidRequest(f"Invalid Episode ID: Version must be 7, found {value.version}")
    ms = uuid7_timestamp_ms(value)
    if ms < _EARLIEST_MS:
        raise InvalidRequest("Invalid Episode ID: Timestamp is before 2020-01-23")
    now_ms = time.time() * 1000
    is_workflow_episode = ms >= now_ms + (WORKFLOW_EVALUATION_OFFSET_S - 3600) * 1000
    if ms > now_ms + 1000 and not is_workflow_episode:
        raise InvalidRequest("Invalid Episode ID: Timestamp is in the future")
    return value
