"""How each provider of a model has been doing, shared by every process on a node: one small
memory-mapped file per model, so a provider one Gateway replica saw fail is left out by the
others at once, with no call to anything. Reads take no lock; updates hold an `flock` for a
few microseconds."""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import random
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from tensorzero_ray.config.models import ModelConfig

STATE_DIR_VARIABLE = "TENSORZERO_RAY_STATE_DIR"
# consecutive failures, open until, probe until, latency average (ms), calls, failed calls
_SLOT = struct.Struct("<6d")
_random = random.Random()


def state_dir() -> Path:
    """Node-local and cleared at boot: /dev/shm where there is one."""
    configured = os.environ.get(STATE_DIR_VARIABLE)
    if configured:
        return Path(configured)
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


@dataclass
class ProviderState:
    name: str
    state: str
    consecutive_failures: int
    latency_ms: float | None
    calls: int
    failed_calls: int
    weight: float | None
    retry_in_s: float | None


class ProviderHealth:
    def __init__(self, model_name: str, config: ModelConfig, directory: Path | None = None):
        self.names = list(config.routing)
        self.balancing = config.load_balancing
        self.breaker = config.circuit_breaker
        digest = hashlib.sha256(model_name.encode() + b"\0" + orjson.dumps(config.model_dump(mode="json"))).hexdigest()
        folder = directory or state_dir()
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"tzray-provider-health-{digest[:24]}"
        size = _SLOT.size * len(self.names)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        with self._locked():
            if os.fstat(self._fd).st_size < size:
                os.ftruncate(self._fd, size)
        self._map = mmap.mmap(self._fd, size)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    def _locked(self):
        return _FileLock(self._fd)

    def _read(self, index: int) -> list[float]:
        return list(_SLOT.unpack_from(self._map, index * _SLOT.size))

    def _write(self, index: int, values: list[float]) -> None:
        _SLOT.pack_into(self._map, index * _SLOT.size, *values)

    def order(self) -> list[int]:
        """The providers to try, first to last, for one request."""
        indices = list(range(len(self.names)))
        strategy = self.balancing.strategy
        if strategy == "ordered":
            return indices
        if strategy == "weighted":
            weights = [self.balancing.weights.get(name, 1.0) for name in self.names]
        else:
            latencies = [self._read(i)[3] for i in indices]
            known = [x for x in latencies if x > 0]
            # A provider not yet measured gets the best measured latency, so it is tried soon.
            floor = min(known) if known else 1.0
            weights = [1.0 / (x if x > 0 else floor) for x in latencies]
        return _draw(indices, weights)

    def allows(self, index: int) -> bool:
        """False while the provider's circuit is open. Once it has been open long enough,
        True for one request at a time: that request is the probe."""
        if self.breaker is None:
            return True
        failures, open_until, probe_until, *_ = self._read(index)
        if failures < self.breaker.failure_threshold:
            return True
        now = time.time()
        if now < open_until or now < probe_until:
            return False
        with self._locked():
            values = self._read(index)
            if now < values[2]:
                return False
            values[2] = now + self.breaker.probe_timeout_s
            self._write(index, values)
        return True

    def retry_in_s(self, index: int) -> float:
        _, open_until, probe_until, *_ = self._read(index)
        return max(0.0, max(open_until, probe_until) - time.time())

    def succeeded(self, index: int, latency_ms: float) -> None:
        with self._locked():
            values = self._read(index)
            average = values[3]
            alpha = self.balancing.latency_smoothing
            values[0:3] = [0.0, 0.0, 0.0]
            values[3] = latency_ms if average <= 0 else (1 - alpha) * average + alpha * latency_ms
            values[4] += 1
            self._write(index, values)

    def failed(self, index: int) -> None:
        with self._locked():
            values = self._read(index)
            values[0] += 1
            values[4] += 1
            values[5] += 1
            if self.breaker is not None and values[0] >= self.breaker.failure_threshold:
                values[1] = time.time() + self.breaker.open_s
                values[2] = 0.0
            self._write(index, values)

    def states(self) -> list[ProviderState]:
        out = []
        for index, name in enumerate(self.names):
            failures, open_until, probe_until, latency, calls, failed = self._read(index)
            state = "closed"
            if self.breaker is not None and failures >= self.breaker.failure_threshold:
                state = "open" if time.time() < max(open_until, probe_until) else "half_open"
            weight = self.balancing.weights.get(name, 1.0) if self.balancing.strategy == "weighted" else None
            out.append(
                ProviderState(
                    name=name,
                    state=state,
                    consecutive_failures=int(failures),
                    latency_ms=round(latency, 1) if latency > 0 else None,
                    calls=int(calls),
                    failed_calls=int(failed),
                    weight=weight,
                    retry_in_s=round(self.retry_in_s(index), 1) if state == "open" else None,
                )
            )
        return out


def _draw(indices: list[int], weights: list[float]) -> list[int]:
    """Weighted draw without replacement; providers of weight 0 come last, in routing order."""
    pool = [(i, w) for i, w in zip(indices, weights) if w > 0]
    rest = [i for i, w in zip(indices, weights) if w <= 0]
    order = []
    while pool:
        total = sum(w for _, w in pool)
        pick = _random.random() * total
        for position, (index, weight) in enumerate(pool):
            pick -= weight
            if pick <= 0 or position == len(pool) - 1:
                order.append(index)
                pool.pop(position)
                break
    return order + rest


class _FileLock:
    def __init__(self, fd: int):
        self._fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)


def health_report(models: dict[str, ModelConfig]) -> dict[str, dict]:
    """What /status and the models page show: every model that balances or breaks circuits."""
    report = {}
    for name, config in models.items():
        if not config.tracks_health:
            continue
        health = ProviderHealth(name, config)
        try:
            report[name] = {
                "strategy": config.load_balancing.strategy,
                "circuit_breaker": config.circuit_breaker is not None,
                "providers": [vars(s) for s in health.states()],
            }
        finally:
            health.close()
    return report
