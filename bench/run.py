"""Side-by-side gateway benchmark, in one run and alternating order (see bench/README.md).

    .venv/bin/python bench/run.py --rates 50,100,200,500 --duration 10

Starts the mock provider, then each system on that mock: tensorzero-ray (`tzray up`, the
native `/inference` and `/openai/v1/chat/completions`, observability on), and, when installed
(`pip install -e '.[bench]'`), TensorZero's gateway and LiteLLM's proxy. Prints added latency
per percentile against the direct call, the highest rate held with zero errors, time to first
byte for streams, CPU per request and memory, and writes JSON under bench/results/."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import RunResult, run  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = [{"role": "user", "content": "Is Santa real?"}]
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.25)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f}s")


def busy_ticks() -> int:
    """CPU time of the whole machine, in clock ticks."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = list(map(int, fields))
    return sum(values) - values[3] - values[4]


def process_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError):
        return 0


def rss_mb(patterns: list[str]) -> float:
    """Resident memory of the processes whose command line contains any of the patterns."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if any(p in cmdline for p in patterns):
                for line in (entry / "status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


@dataclass
class Target:
    system: str
    endpoint: str
    port: int
    path: str
    stream: bool
    body: dict
    memory_patterns: list[str]
    replica_patterns: list[str]


class Stack:
    def __init__(self, workdir: Path, mock_port: int):
        self.workdir = workdir
        self.mock_port = mock_port
        self.processes: list[subprocess.Popen] = []
        self.stopped: list[list[str]] = []

    def spawn(self, args: list[str], **kwargs) -> subprocess.Popen:
        # Own process group: LiteLLM's proxy forks workers that must go when it goes.
        process = subprocess.Popen(
            args,
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            **kwargs,
        )
        self.processes.append(process)
        return process

    def mock(self) -> subprocess.Popen:
        process = self.spawn([sys.executable, str(ROOT / "bench" / "mock_provider.py"), "--port", str(self.mock_port)])
        wait_http(f"http://127.0.0.1:{self.mock_port}/")
        return process

    def gateway_config(self, observability: bool) -> str:
        """One function, one variant, one model on the mock: the same for both gateways."""
        return textwrap.dedent(f"""
            [gateway]
            observability.enabled = {str(observability).lower()}

            [models.bench]
            routing = ["mock"]
            [models.bench.providers.mock]
            type = "openai"
            model_name = "bench"
            api_base = "http://127.0.0.1:{self.mock_port}/v1/"
            api_key_location = "none"

            [functions.function1]
            type = "chat"
            [functions.function1.variants.variant1]
            type = "chat_completion"
            model = "bench"
            max_tokens = 100

            [metrics.liked]
            type = "boolean"
            optimize = "max"
            level = "inference"
            """)

    def tzray(self, routers: str, observability: bool, extra: list[str]) -> int:
        port = free_port()
        config = self.workdir / "tensorzero.toml"
        config.write_text(self.gateway_config(observability))
        subprocess.run(
            [
                sys.executable,
                "-m",
                "tensorzero_ray.cli",
                "up",
                "--config",
                str(config),
                "--port",
                str(port),
                "--routers",
                routers,
                *extra,
            ],
            cwd=self.workdir,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.stopped.append([sys.executable, "-m", "tensorzero_ray.cli", "down"])
        return port

    def tensorzero(self) -> int | None:
        try:
            import tensorzero  # noqa: F401
        except ImportError:
            return None
        config = self.workdir / "tz" / "tensorzero.toml"
        config.parent.mkdir(exist_ok=True)
        config.write_text(self.gateway_config(observability=False))
        script = textwrap.dedent(f"""
            import sys, time, tensorzero
            gateway = tensorzero._start_http_gateway(config_file={str(config)!r}, clickhouse_url=None,
                                                     postgres_url=None, valkey_url=None, async_setup=False)
            print("BASE_URL", gateway.base_url, flush=True)
            time.sleep(10**6)
            """)
        process = subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "TENSORZERO_CLICKHOUSE_URL": ""},
        )
        self.processes.append(process)
        for line in process.stdout:
            if line.startswith("BASE_URL "):
                return httpx.URL(line.split()[1]).port
        raise RuntimeError("TensorZero's gateway did not start")

    def litellm(self) -> int | None:
        binary = shutil.which("litellm") or os.environ.get("LITELLM_BIN")
        if not binary:
            return None
        port = free_port()
        config = self.workdir / "litellm.yaml"
        config.write_text(
            textwrap.dedent(f"""
            model_list:
              - model_name: bench
                litellm_params:
                  model: openai/bench
                  api_base: http://127.0.0.1:{self.mock_port}/v1
                  api_key: none
            general_settings:
              master_key: sk-bench
            """)
        )
        self.spawn([binary, "--config", str(config), "--port", str(port), "--num_workers", "2"])
        wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout_s=300)
        return port

    def close(self) -> None:
        for command in self.stopped:
            subprocess.run(command, cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for process in self.processes:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def targets(
    stack: Stack, mock_port: int, tzray_port: int, tz_port: int | None, litellm_port: int | None, streaming: bool
) -> list[Target]:
    native = {"function_name": "function1", "input": {"messages": MESSAGES}}
    openai = {"model": "tensorzero::function_name::function1", "messages": MESSAGES}
    out = [
        Target(
            "direct",
            "mock",
            mock_port,
            "/v1/chat/completions",
            False,
            {"model": "bench", "messages": MESSAGES, "max_tokens": 100},
            [],
            [],
        )
    ]
    ray = ["ray::", "raylet", "gcs_server", "dashboard", "ray/_private"]
    out += [
        Target(
            "tensorzero-ray",
            "/inference",
            tzray_port,
            "/inference",
            False,
            native,
            ray,
            ["ServeReplica:tensorzero:Gateway"],
        ),
        Target(
            "tensorzero-ray",
            "/openai/v1",
            tzray_port,
            "/openai/v1/chat/completions",
            False,
            openai,
            ray,
            ["ServeReplica:tensorzero:Gateway"],
        ),
    ]
    if tz_port is not None:
        out.append(
            Target(
                "tensorzero",
                "/openai/v1",
                tz_port,
                "/openai/v1/chat/completions",
                False,
                openai,
                ["_start_http_gateway"],
                ["_start_http_gateway"],
            )
        )
    if litellm_port is not None:
        out.append(
            Target(
                "litellm",
                "/chat/completions",
                litellm_port,
                "/chat/completions",
                False,
                {"model": "bench", "messages": MESSAGES, "max_tokens": 100},
                ["litellm"],
                ["litellm"],
            )
        )
    if streaming:
        out += [
            Target(
                t.system,
                t.endpoint + " stream",
                t.port,
                t.path,
                True,
                {**t.body, "stream": True},
                t.memory_patterns,
                t.replica_patterns,
            )
            for t in list(out)
        ]
    return out


async def measure(target: Target, rate: float, duration: float, mock: subprocess.Popen) -> dict:
    body = json.dumps(target.body).encode()
    before_busy, before_mock = busy_ticks(), process_ticks(mock.pid)
    before_self = resource.getrusage(resource.RUSAGE_SELF)
    result: RunResult = await run("127.0.0.1", target.port, target.path, body, rate, duration)
    after_self = resource.getrusage(resource.RUSAGE_SELF)
    own = (after_self.ru_utime + after_self.ru_stime - before_self.ru_utime - before_self.ru_stime) * TICKS
    system_ticks = busy_ticks() - before_busy - (process_ticks(mock.pid) - before_mock) - own
    ok = max(1, sum(s.ok for s in result.samples))
    return {
        "system": target.system,
        "endpoint": target.endpoint,
        "stream": target.stream,
        "rate": rate,
        "errors": result.errors,
        "achieved_rate": round(result.achieved_rate, 1),
        **{f"p{k}": _ms(result.percentile(q)) for k, q in (("50", 0.5), ("90", 0.9), ("99", 0.99), ("99.9", 0.999))},
        "ttfb_p50": _ms(result.percentile(0.5, "ttfb_s")),
        "ttfb_p99": _ms(result.percentile(0.99, "ttfb_s")),
        "cpu_ms_per_request": round(max(system_ticks, 0) / TICKS * 1000 / ok, 2),
        "rss_mb": round(rss_mb(target.memory_patterns), 1) if target.memory_patterns else None,
        "replica_rss_mb": round(rss_mb(target.replica_patterns), 1) if target.replica_patterns else None,
        "error_kinds": sorted({s.error for s in result.samples if not s.ok})[:5],
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def report(rows: list[dict]) -> str:
    direct = {(r["stream"], r["rate"]): r for r in rows if r["system"] == "direct"}
    lines = [
        f"{'system':15} {'endpoint':24} {'rate':>5} {'ok/s':>7} {'err':>5} {'+p50':>8} {'+p90':>8} {'+p99':>8} "
        f"{'+p99.9':>8} {'+ttfb50':>8} {'cpu ms':>7} {'rss MB':>8}"
    ]
    for r in rows:
        base = direct.get((r["stream"], r["rate"]))
        added = {k: _sub(r[k], base[k] if base else None) for k in ("p50", "p90", "p99", "p99.9", "ttfb_p50")}
        lines.append(
            f"{r['system']:15} {r['endpoint']:24} {r['rate']:>5.0f} {r['achieved_rate']:>7.1f} "
            f"{r['errors']:>5} {_fmt(added['p50'])} {_fmt(added['p90'])} {_fmt(added['p99'])} "
            f"{_fmt(added['p99.9'])} {_fmt(added['ttfb_p50'])} {r['cpu_ms_per_request']:>7.2f} "
            f"{_fmt(r['replica_rss_mb'])}"
        )
    best: dict[tuple, float] = {}
    for r in rows:
        if r["errors"] == 0:
            key = (r["system"], r["endpoint"])
            best[key] = max(best.get(key, 0), r["rate"])
    lines.append("")
    lines.append("highest rate with zero errors: " + ", ".join(f"{s} {e}: {v:.0f}" for (s, e), v in best.items()))
    return "\n".join(lines)


def _sub(a, b):
    return None if a is None or b is None else round(a - b, 2)


def _fmt(value) -> str:
    return f"{value:>8.2f}" if isinstance(value, (int, float)) else f"{'-':>8}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="50,100,200")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--stream", action="store_true", help="also measure streaming")
    parser.add_argument("--routers", default="in_process", choices=["deployments", "in_process"])
    parser.add_argument("--no-observability", action="store_true", help="run tensorzero-ray without storage")
    parser.add_argument("--no-ha-proxy", action="store_true", help="Serve's Python proxy instead of HAProxy")
    parser.add_argument(
        "--no-throughput-optimized", action="store_true", help="leave RAY_SERVE_THROUGHPUT_OPTIMIZED off"
    )
    parser.add_argument("--no-dashboard", action="store_true", help="start Ray without its dashboard")
    parser.add_argument("--gateway-replicas", type=int, default=min(os.cpu_count() or 1, 4))
    parser.add_argument("--skip", default="", help="comma-separated systems to leave out: tensorzero,litellm")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    skip = set(filter(None, args.skip.split(",")))
    with tempfile.TemporaryDirectory() as tmp:
        mock_port = free_port()
        stack = Stack(Path(tmp), mock_port)
        try:
            mock = stack.mock()
            flags = (
                ("--no-ha-proxy", args.no_ha_proxy),
                ("--no-throughput-optimized", args.no_throughput_optimized),
                ("--no-dashboard", args.no_dashboard),
            )
            extra = [flag for flag, on in flags if on]
            extra += ["--gateway-replicas", str(args.gateway_replicas)]
            tzray_port = stack.tzray(args.routers, not args.no_observability, extra)
            tz_port = None if "tensorzero" in skip else stack.tensorzero()
            litellm_port = None if "litellm" in skip else stack.litellm()
            plan = targets(stack, mock_port, tzray_port, tz_port, litellm_port, args.stream)
            for t in plan:  # warm every path once
                await run("127.0.0.1", t.port, t.path, json.dumps(t.body).encode(), 20, 1)
            rows = []
            for index, rate in enumerate(rates):
                for target in plan if index % 2 == 0 else list(reversed(plan)):
                    rows.append(await measure(target, rate, args.duration, mock))
                    print(f"  measured {target.system} {target.endpoint} at {rate:.0f}/s", file=sys.stderr)
        finally:
            stack.close()
    rows.sort(key=lambda r: (r["stream"], r["rate"], r["system"], r["endpoint"]))
    print(report(rows))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"run-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"args": vars(args), "cpus": os.cpu_count(), "rows": rows}, indent=1))
    print(f"\nwrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
