"""ClickHouse's HTTP interface in front of chDB: the real engine behind the wire protocol that
clickhouse-connect speaks to a ClickHouse server. No modern ClickHouse server installs on
these machines, so the server path (several writers, readers connecting directly) is tested
against this. Run it as its own process: chDB allows one engine per process.

    python -m tests.mocks.clickhouse_server --path DIR --port PORT [--password PW]
"""

from __future__ import annotations

import argparse
import base64
import gzip
import re
import subprocess
import sys
import threading
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlparse

import chdb.session
import lz4.frame
import orjson

from tests.mocks.server import free_port

ROOT = Path(__file__).resolve().parents[2]

# Request parameters of ClickHouse's HTTP interface that are not query settings.
TRANSPORT = {
    "query",
    "database",
    "default_format",
    "session_id",
    "session_timeout",
    "session_check",
    "query_id",
    "compress",
    "decompress",
    "user",
    "password",
    "quota_key",
    "role",
    "wait_end_of_query",
    "enable_http_compression",
    "http_headers_progress_interval_ms",
    "send_progress_in_http_headers",
    "client_protocol_version",
}
FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*$", re.IGNORECASE)
INSERT = re.compile(r"^\s*INSERT\s", re.IGNORECASE)


class ClickHouseOverChDB:
    def __init__(self, path: str, password: str = ""):
        self.session = chdb.session.Session(path)
        self.password = password
        self.lock = threading.Lock()

    def authorized(self, headers, params: dict[str, str]) -> bool:
        password = params.get("password") or headers.get("X-ClickHouse-Key", "")
        auth = headers.get("Authorization", "")
        if auth.startswith("Basic "):
            password = base64.b64decode(auth[6:]).decode().partition(":")[2]
        return password == self.password

    def run(self, sql: str, data: bytes, params: dict[str, str]) -> tuple[bytes, str]:
        """(output, format) for one request, with its settings applied for it alone."""
        settings = {k: v for k, v in params.items() if k not in TRANSPORT and not k.startswith("param_")}
        bound = {k.removeprefix("param_"): v for k, v in params.items() if k.startswith("param_")}
        database = params.get("database")
        if INSERT.match(sql) and data:
            # The rows follow the statement, as clickhouse-client sends them.
            sql = sql.rstrip() + "\n" + data.decode()
        elif data:
            sql = sql + data.decode() if sql else data.decode()
        named = FORMAT.search(sql.split("\n", 1)[0]) if INSERT.match(sql) else FORMAT.search(sql)
        fmt = named.group(1) if named and not INSERT.match(sql) else params.get("default_format", "TabSeparated")
        with self.lock:
            if database:
                self.session.query(f"USE `{database}`")
            for key, value in settings.items():
                self.session.query(
                    f"SET {key} = '{value}'" if not value.lstrip("-").isdigit() else f"SET {key} = {value}"
                )
            try:
                result = self.session.query(sql, fmt, params=bound or None)
            finally:
                for key in settings:
                    self.session.query(f"SET {key} = DEFAULT")
        return result.bytes(), fmt


def decoded(body: bytes, encoding: str | None) -> bytes:
    if encoding == "lz4":
        return lz4.frame.decompress(body)
    if encoding == "gzip":
        return gzip.decompress(body)
    return body


def form_fields(body: bytes, content_type: str) -> dict[str, str]:
    message = BytesParser(policy=policy.HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    return {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True).decode()
        for part in message.iter_parts()
    }


def handler(engine: ClickHouseOverChDB):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            return

        def do_GET(self) -> None:
            self.handle_query(b"")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.handle_query(decoded(self.rfile.read(length), self.headers.get("Content-Encoding")))

        def handle_query(self, body: bytes) -> None:
            url = urlparse(self.path)
            if url.path == "/ping":
                return self.reply(200, b"Ok.\n", {})
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            content_type = self.headers.get("Content-Type", "")
            if content_type.startswith("multipart/form-data"):
                # Large bound parameters come as form fields, with the query among them.
                params.update(form_fields(body, content_type))
                body = b""
            if not engine.authorized(self.headers, params):
                message = b"Code: 516. DB::Exception: default: Authentication failed. (AUTHENTICATION_FAILED)\n"
                return self.reply(403, message, {"X-ClickHouse-Exception-Code": "516"})
            sql = params.get("query", "")
            try:
                output, fmt = engine.run(sql, body, params)
            except Exception as exc:  # noqa: BLE001 - the engine's error goes back as ClickHouse's
                code = re.search(r"Code: (\d+)", str(exc))
                message = str(exc) if code else f"Code: 1001. DB::Exception: {exc}"
                headers = {"X-ClickHouse-Exception-Code": code.group(1) if code else "1001"}
                return self.reply(500, message.encode() + b"\n", headers)
            summary = orjson.dumps({"read_rows": "0", "written_rows": "0"}).decode()
            self.reply(
                200,
                output,
                {"X-ClickHouse-Format": fmt, "X-ClickHouse-Summary": summary, "X-ClickHouse-Timezone": "UTC"},
            )

        def reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-ClickHouse-Server-Display-Name", "chdb-bridge")
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

    return Handler


class ClickHouseServer:
    """The bridge as a child process of a test: `start` waits until it listens; `stop` and
    `start` again on the same data is a server restart."""

    def __init__(self, path: str | Path, password: str = "pw"):
        self.path, self.password, self.port = str(path), password, free_port()
        self.process: subprocess.Popen | None = None

    def dsn(self, database: str) -> str:
        return f"http://default:{self.password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> "ClickHouseServer":
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.mocks.clickhouse_server", "--path", self.path,
             "--port", str(self.port), "--password", self.password],
            stdout=subprocess.PIPE, cwd=ROOT, text=True,
        )  # fmt: skip
        assert self.process.stdout.readline().startswith("listening"), "the ClickHouse bridge did not start"
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--path", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--password", default="")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(ClickHouseOverChDB(args.path, args.password)))
    print(f"listening on {args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
