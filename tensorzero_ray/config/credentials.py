"""Credential locations (spec §3.3): where a provider's key comes from. Values are read
lazily and kept out of reprs, logs and storage."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from tensorzero_ray.errors import ApiKeyMissing

_PREFIXES = ("env::", "dynamic::", "path::", "path_from_env::")


def _check_location(value: str) -> str:
    if value in ("none", "sdk") or value.startswith(_PREFIXES):
        if value.startswith(_PREFIXES) and value.endswith("::"):
            raise ValueError(f"credential location `{value}` has an empty name")
        return value
    raise ValueError(
        f"invalid credential location `{value}`: expected `env::VAR`, `dynamic::NAME`, "
        "`path::FILE`, `path_from_env::VAR`, `sdk` or `none`"
    )


class CredentialWithFallback(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default: str
    fallback: str

    @field_validator("default", "fallback")
    @classmethod
    def _valid(cls, value: str) -> str:
        return _check_location(value)


CredentialLocation = Union[str, CredentialWithFallback]


def validate_location(value: CredentialLocation) -> CredentialLocation:
    if isinstance(value, str):
        return _check_location(value)
    return value


def _read_one(location: str, credentials: dict[str, str]) -> SecretStr | None | Literal[False]:
    """The key, None for `none`, or False when the location has nothing."""
    if location == "none":
        return None
    if location == "sdk":
        return False
    kind, _, name = location.partition("::")
    if kind == "env":
        value = os.environ.get(name)
    elif kind == "dynamic":
        value = credentials.get(name)
    elif kind == "path":
        value = _read_path(name)
    else:
        path = os.environ.get(name)
        value = _read_path(path) if path else None
    return SecretStr(value.strip()) if value else False


def _read_path(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return None


def resolve_credential(location: CredentialLocation, credentials: dict[str, str], provider: str) -> SecretStr | None:
    """The API key for one request, or None when the location is `none`."""
    locations = [location] if isinstance(location, str) else [location.default, location.fallback]
    for loc in locations:
        value = _read_one(loc, credentials)
        if value is not False:
            return value
    described = " or ".join(f"`{loc}`" for loc in locations)
    raise ApiKeyMissing(provider, f"no credential found at {described}")
