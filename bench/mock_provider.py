"""A fast mock of OpenAI's chat completions endpoint for benchmarks: a bare asyncio HTTP/1.1
server (keep-alive, no framework) so that the mock costs as little CPU as possible.

    python bench/mock_provider.py --port 3030 --delay-ms 0.2 --chunks 64
"""

from __future__ import annotations

import argparse
import asyncio
import json

WORDS = "The quick brown fox jumps over the lazy dog while the gateway keeps every token moving".split()


def completion_body(tokens: int) -> bytes:
    text = " ".join(WORDS[i % len(WORDS)] for i in range(tokens))
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1,
            "model": "bench",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": tokens, "total_tokens": 20 + tokens},
        }
    ).encode()


def stream_events(chunks: int) -> list[bytes]:
    events = []
    for i in range(chunks):
        delta = {"role": "assistant", "content": WORDS[0]} if i == 0 else {"content": " " + WORDS[i % len(WORDS)]}
        payload = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "bench",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        }
        events.append(b"data: " + json.dumps(payload).encode() + b"\n\n")
    final = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "bench",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": chunks, "total_tokens": 20 + chunks},
    }
    events.append(b"data: " + json.dumps(final).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


class MockProtocol(asyncio.Protocol):
    def __init__(self, delay_s: float, body: bytes, events: list[bytes]):
        self.delay_s = delay_s
        self.body = body
        self.events = events
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(self.buffer) < head_end + 4 + length:
                return
            body = self.buffer[head_end + 4 : head_end + 4 + length]
            self.buffer = self.buffer[head_end + 4 + length :]
            stream = b'"stream": true' in body or b'"stream":true' in body
            asyncio.get_running_loop().call_later(self.delay_s, self.respond, stream)

    def respond(self, stream: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if not stream:
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                + str(len(self.body)).encode()
                + b"\r\n\r\n"
                + self.body
            )
            return
        out = [b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"]
        for event in self.events:
            out.append(f"{len(event):x}\r\n".encode() + event + b"\r\n")
        out.append(b"0\r\n\r\n")
        self.transport.write(b"".join(out))


async def serve(port: int, delay_ms: float, tokens: int, chunks: int) -> None:
    loop = asyncio.get_running_loop()
    body, events = completion_body(tokens), stream_events(chunks)
    server = await loop.create_server(
        lambda: MockProtocol(delay_ms / 1000, body, events), "127.0.0.1", port, backlog=4096
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=3030)
    parser.add_argument("--delay-ms", type=float, default=0.2)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.delay_ms, args.tokens, args.chunks))


if __name__ == "__main__":
    main()
