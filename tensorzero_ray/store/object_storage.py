"""Files from inference inputs, kept by content hash so stored inferences point at them
instead of carrying the bytes (spec §2.1, §3.14)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from pathlib import Path
from typing import Any

FILES_PREFIX = "observability/files"
_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/webp": "webp",
    "application/pdf": "pdf",
    "audio/mpeg": "mp3",
    "audio/wav": "wav",
    "audio/ogg": "ogg",
    "audio/flac": "flac",
}


def storage_key(data: bytes, mime_type: str) -> str:
    extension = _EXTENSIONS.get(mime_type, mime_type.split("/")[-1] if "/" in mime_type else "bin")
    return f"{FILES_PREFIX}/{hashlib.sha256(data).hexdigest()}.{extension}"


class FilesystemObjectStore:
    def __init__(self, base: str | Path):
        self.base = Path(base)

    def kind(self) -> dict[str, Any]:
        return {"type": "filesystem", "path": str(self.base)}

    def _put(self, key: str, data: bytes) -> None:
        target = self.base / key
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)

    async def put(self, data: bytes, mime_type: str) -> dict[str, Any]:
        key = storage_key(data, mime_type)
        await asyncio.to_thread(self._put, key, data)
        return {"kind": self.kind(), "path": key}


async def pointer_blocks(store: FilesystemObjectStore, stored_input: dict) -> dict:
    """The stored input with base64 file blocks replaced by object-storage pointers."""
    for message in stored_input.get("messages", []):
        for index, block in enumerate(message["content"]):
            if block.get("type") == "file" and block.get("file_type") == "base64":
                data = base64.b64decode(block["data"])
                pointer = {
                    "type": "file",
                    "file_type": "object_storage_pointer",
                    "mime_type": block["mime_type"],
                    "storage_path": await store.put(data, block["mime_type"]),
                }
                for key in ("url", "detail", "filename"):
                    if block.get(key):
                        pointer["source_url" if key == "url" else key] = block[key]
                message["content"][index] = pointer
    return stored_input


def label_inline_files(stored_input: dict) -> None:
    """Files kept inline (no object storage configured) still get the `storage_path` that
    TensorZero's clients expect of a stored file; its kind `disabled` says no store holds it."""
    for message in stored_input.get("messages", []):
        for block in message["content"]:
            if block.get("type") == "file" and block.get("file_type") == "base64" and "storage_path" not in block:
                data = base64.b64decode(block["data"])
                block["storage_path"] = {"kind": {"type": "disabled"}, "path": storage_key(data, block["mime_type"])}
