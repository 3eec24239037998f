"""API keys as TensorZero makes them (`sk-t0-<12-character public id>-<48-character
secret>`): created, listed and disabled through the store, checked on every request against
a per-replica cache that forgets each answer after `gateway.auth.cache.ttl_ms`, so a key
disabled on one replica stops working on all of them within that bound."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import time
from datetime import datetime, timezone

from pydantic import BaseModel, field_validator

from tensorzero_ray.errors import InvalidRequest, NotFound, TensorZeroError

TABLE = "TensorZeroApiKey"
KEY_FORMAT = re.compile(r"^sk-t0-([a-z0-9]{12})-([A-Za-z0-9]{48})$")
_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
_COLUMNS = "public_id, hash, description, organization, workspace, created_at, expires_at, disabled_at"


class Unauthenticated(TensorZeroError):
    status_code = 401
    kind = "ApiKeyInvalid"


class ApiKey(BaseModel):
    """A key as listed: never its secret."""

    public_id: str
    description: str = ""
    organization: str = "default"
    workspace: str = "default"
    created_at: datetime
    expires_at: datetime | None = None
    disabled_at: datetime | None = None

    @field_validator("created_at", "expires_at", "disabled_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        """ClickHouse returns its `UTC` columns without a zone."""
        return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value

    @property
    def state(self) -> str:
        if self.disabled_at is not None:
            return "disabled"
        if self.expires_at is not None and self.expires_at <= datetime.now(timezone.utc):
            return "expired"
        return "active"


def key_hash(key: str) -> str:
    """SHA-256: the secret is 48 random characters, so no slow hash is needed against guessing."""
    return hashlib.sha256(key.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc)


class ApiKeys:
    def __init__(self, observability, ttl_s: float = 1.0):
        self._observability = observability
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, tuple[ApiKey, str] | None]] = {}

    async def create(self, description: str = "", expires_at: datetime | None = None) -> tuple[str, ApiKey]:
        """The new key, shown once, and its record."""
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise InvalidRequest("`expires_at` needs a time zone (RFC 3339, e.g. 2027-01-01T00:00:00Z)")
            if expires_at <= _now():
                raise InvalidRequest("`expires_at` is in the past")
        public_id = "".join(secrets.choice(_ALPHABET) for _ in range(12))
        secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(48))
        key = f"sk-t0-{public_id}-{secret}"
        now = _now()
        record = ApiKey(public_id=public_id, description=description, created_at=now, expires_at=expires_at)
        await self._write(record, key_hash(key), now)
        return key, record

    async def _write(self, record: ApiKey, hashed: str, updated_at: datetime) -> None:
        row = {**record.model_dump(), "hash": hashed, "updated_at": updated_at}
        await self._observability.insert(TABLE, [row])
        self._cache.pop(record.public_id, None)

    async def _rows(self, public_id: str | None = None) -> list[dict]:
        where = "WHERE public_id = {public_id:String}" if public_id is not None else ""
        sql = f"SELECT {_COLUMNS} FROM {TABLE} FINAL {where} ORDER BY created_at"
        return await self._observability.query(sql, {"public_id": public_id} if public_id is not None else None)

    async def list(self) -> list[ApiKey]:
        return [ApiKey.model_validate(row) for row in await self._rows()]

    async def disable(self, public_id: str) -> ApiKey:
        rows = await self._rows(public_id)
        if not rows:
            raise NotFound(f"No API key with public id `{public_id}`")
        record = ApiKey.model_validate(rows[0])
        if record.disabled_at is None:
            now = _now()
            record.disabled_at = now
            await self._write(record, rows[0]["hash"], now)
        return record

    async def authenticate(self, authorization: str | None) -> str:
        """The public id of the key an `Authorization` header carries, or `Unauthenticated`."""
        if not authorization:
            raise Unauthenticated("Authentication failed: the request has no `Authorization: Bearer <API key>` header")
        scheme, _, key = authorization.partition(" ")
        found = KEY_FORMAT.match(key.strip()) if scheme.lower() == "bearer" else None
        if found is None:
            raise Unauthenticated(
                "Authentication failed: the API key is malformed "
                "(expected `Authorization: Bearer sk-t0-<12 characters>-<48 characters>`)"
            )
        public_id = found.group(1)
        row = await self._lookup(public_id)
        if row is None or not hmac.compare_digest(row[1], key_hash(key.strip())):
            raise Unauthenticated("Authentication failed: unknown API key")
        state = row[0].state
        if state == "disabled":
            raise Unauthenticated(f"Authentication failed: API key `{public_id}` was disabled")
        if state == "expired":
            raise Unauthenticated(f"Authentication failed: API key `{public_id}` has expired")
        return public_id

    async def _lookup(self, public_id: str) -> tuple[ApiKey, str] | None:
        cached = self._cache.get(public_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        rows = await self._rows(public_id)
        row = (ApiKey.model_validate(rows[0]), rows[0]["hash"]) if rows else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[public_id] = (now, row)
        return row
