"""An open-loop, constant-rate HTTP load generator: request i is sent at t0 + i/rate whether or
not earlier ones have answered, so a slow server shows up as latency and errors instead of a
politely lowered rate. A bare asyncio HTTP/1.1 client with keep-alive connections keeps the
generator's own CPU cost small."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class Sample:
    ok: bool
    latency_s: float
    ttfb_s: float
    error: str = ""


@dataclass
class RunResult:
    rate: float
    duration_s: float
    samples: list[Sample] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(not s.ok for s in self.samples)

    @property
    def achieved_rate(self) -> float:
        return sum(s.ok for s in self.samples) / self.duration_s

    def percentile(self, q: float, key: str = "latency_s") -> float | None:
        values = sorted(getattr(s, key) for s in self.samples if s.ok)
        if not values:
            return None
        return values[min(len(values) - 1, int(q * len(values)))]


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    async def exchange(self, request: bytes, started: float) -> tuple[int, float]:
        """Send one request; return (status, time to the first body byte)."""
        self.writer.write(request)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length, chunked = None, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        ttfb = 0.0
        if chunked:
            while True:
                size = int((await self.reader.readline()).strip() or b"0", 16)
                if not ttfb:
                    ttfb = time.perf_counter() - started
                if size == 0:
                    await self.reader.readline()
                    break
                await self.reader.readexactly(size + 2)
        else:
            await self.reader.readexactly(length or 0)
            ttfb = time.perf_counter() - started
        return status, ttfb


class Pool:
    def __init__(self, host: str, port: int, limit: int = 2048):
        self.host, self.port = host, port
        self._idle: list[Connection] = []
        self._limit = asyncio.Semaphore(limit)

    async def send(self, request: bytes) -> Sample:
        async with self._limit:
            started = time.perf_counter()
            connection = self._idle.pop() if self._idle else None
            try:
                if connection is None:
                    connection = Connection(*await asyncio.open_connection(self.host, self.port))
                status, ttfb = await connection.exchange(request, started)
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
                if connection is not None:
                    connection.writer.close()
                return Sample(False, time.perf_counter() - started, 0.0, type(exc).__name__)
            self._idle.append(connection)
            return Sample(status == 200, time.perf_counter() - started, ttfb, "" if status == 200 else str(status))

    def close(self) -> None:
        for connection in self._idle:
            connection.writer.close()


def build_request(host: str, port: int, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nauthorization: Bearer sk-bench\r\n\r\n"
    ).encode() + body


async def run(
    host: str, port: int, path: str, body: bytes, rate: float, duration_s: float, timeout_s: float = 5.0
) -> RunResult:
    pool = Pool(host, port)
    request = build_request(host, port, path, body)
    total = int(rate * duration_s)
    result = RunResult(rate=rate, duration_s=duration_s)

    async def one() -> None:
        try:
            result.samples.append(await asyncio.wait_for(pool.send(request), timeout_s))
        except TimeoutError:
            result.samples.append(Sample(False, timeout_s, 0.0, "timeout"))

    tasks = []
    started = time.perf_counter()
    for i in range(total):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    pool.close()
    return result
