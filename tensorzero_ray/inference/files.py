"""Input files (spec §2.1): base64 is checked and typed from its bytes, URLs are fetched when
the file must be kept or the config asks for it, and nothing oversized gets through."""

from __future__ import annotations

import base64
import binascii
import logging

import httpx

from tensorzero_ray.errors import InvalidRequest, PayloadTooLarge
from tensorzero_ray.inference.url_fetch import FetchPolicy, FetchRefused, guarded_client
from tensorzero_ray.types import File, Input, InputMessage

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 20 * 1024 * 1024

_MAGIC: list[tuple[bytes, int, str]] = [
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"%PDF-", 0, "application/pdf"),
    (b"ID3", 0, "audio/mpeg"),
    (b"\xff\xfb", 0, "audio/mpeg"),
    (b"OggS", 0, "audio/ogg"),
    (b"fLaC", 0, "audio/flac"),
]


def sniff_mime(data: bytes) -> str | None:
    """The MIME type the bytes themselves announce, for the formats models take."""
    for magic, offset, mime in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    return None


def _decoded(file: File, where: str) -> bytes:
    if len(file.data) * 3 // 4 > MAX_FILE_BYTES:
        raise PayloadTooLarge(f"{where}: file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    try:
        return base64.b64decode(file.data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{where}: `data` is not valid base64") from None


def _checked_mime(declared: str | None, data: bytes, where: str) -> str:
    sniffed = sniff_mime(data)
    if declared and declared.startswith("image/"):
        if sniffed is None or not sniffed.startswith("image/"):
            raise InvalidRequest(f"{where}: the data is not a valid {declared} image")
        return sniffed
    if declared:
        return declared
    if sniffed is None:
        raise InvalidRequest(f"{where}: cannot tell the file's type; set `mime_type`")
    return sniffed


class FileResolver:
    """Normalises every file block of an input. `fetch_urls` makes URL files local (needed to
    keep them in object storage); otherwise URLs go to providers as they are."""

    def __init__(self, fetch_urls: bool, timeout_s: float = 30.0, policy: FetchPolicy | None = None):
        self.fetch_urls = fetch_urls
        self.policy = policy or FetchPolicy()
        self._timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None

    async def resolve(self, value: Input) -> Input:
        if not any(isinstance(b, File) for m in value.messages for b in m.content):
            return value
        messages = []
        for m_index, message in enumerate(value.messages):
            blocks = []
            for b_index, block in enumerate(message.content):
                if isinstance(block, File):
                    block = await self._file(block, f"input.messages[{m_index}].content[{b_index}]")
                blocks.append(block)
            messages.append(InputMessage.model_construct(role=message.role, content=blocks))
        return value.model_copy(update={"messages": messages})

    async def _file(self, file: File, where: str) -> File:
        if file.file_type == "base64":
            data = _decoded(file, where)
            return file.model_copy(update={"mime_type": _checked_mime(file.mime_type, data, where)})
        if not self.fetch_urls:
            return file
        data, content_type = await self._fetch(file.url, where)
        declared = file.mime_type or (content_type.split(";")[0].strip() if content_type else None)
        mime = _checked_mime(declared, data, where)
        return file.model_copy(
            update={"file_type": "base64", "data": base64.b64encode(data).decode(), "mime_type": mime}
        )

    async def _fetch(self, url: str, where: str) -> tuple[bytes, str | None]:
        """One answer for every way a fetch can fail: which ports exist and what answers
        there stays unknown to the caller (the reason goes to the log)."""
        if self._client is None:
            self._client = guarded_client(self.policy, self._timeout_s)
        try:
            async with self._client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise FetchRefused(f"HTTP {response.status_code}")
                body = bytearray()
                async for piece in response.aiter_bytes():
                    body += piece
                    if len(body) > MAX_FILE_BYTES:
                        raise FetchRefused(f"larger than {MAX_FILE_BYTES} bytes")
                return bytes(body), response.headers.get("content-type")
        except (httpx.HTTPError, FetchRefused, OSError) as exc:
            logger.info("input file fetch refused or failed (%s): %s", url, exc)
            raise InvalidRequest(
                f"{where}: could not fetch the file at its URL (it must be a public http(s) address, or one "
                f"allowed by `gateway.security.fetch_allowed_hosts`, answer 200, and be at most "
                f"{MAX_FILE_BYTES // (1024 * 1024)} MiB)"
            ) from None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
