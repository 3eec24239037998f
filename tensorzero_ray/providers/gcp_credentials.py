"""Service-account credentials for GCP Vertex AI: checked at start-up, turned into access
tokens by google-auth, and refreshed before the tokens expire."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import google.auth
import google.auth.exceptions
import google.auth.transport.requests
import orjson
from google.auth import crypt
from google.oauth2 import service_account

from tensorzero_ray.config.credentials import CredentialLocation
from tensorzero_ray.errors import ApiKeyMissing, ProviderError

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_CREDENTIAL_LOCATION = "path_from_env::GCP_VERTEX_CREDENTIALS_PATH"
_REQUIRED = ("client_email", "private_key", "token_uri")


class CredentialsProblem(ValueError):
    """A credential that cannot work; the message names where it came from, never its value."""


def _locations(location: CredentialLocation) -> list[str]:
    return [location] if isinstance(location, str) else [location.default, location.fallback]


def service_account_info(text: str, where: str) -> dict[str, Any]:
    """The parsed service-account JSON, its private key included, or `CredentialsProblem`."""
    try:
        info = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise CredentialsProblem(f"{where} does not hold JSON") from None
    if not isinstance(info, dict):
        raise CredentialsProblem(f"{where} does not hold a JSON object")
    if info.get("type") != "service_account":
        raise CredentialsProblem(f"{where} is not a service-account key (its `type` is not `service_account`)")
    missing = [key for key in _REQUIRED if not info.get(key)]
    if missing:
        raise CredentialsProblem(f"{where} lacks {', '.join(f'`{k}`' for k in missing)}")
    try:
        crypt.RSASigner.from_service_account_info(info)
    except (ValueError, TypeError):
        raise CredentialsProblem(f"{where}: `private_key` is not a PEM-encoded RSA private key") from None
    return info


def _static_text(location: str) -> tuple[str, str] | None:
    """(text, where) for a location readable at start-up; None for `dynamic::` and `sdk`."""
    kind, _, name = location.partition("::")
    if kind == "env":
        value = os.environ.get(name)
        if not value:
            raise CredentialsProblem(f"environment variable `{name}` is not set")
        return value, f"environment variable `{name}`"
    if kind in ("path", "path_from_env"):
        path = name
        if kind == "path_from_env":
            path = os.environ.get(name, "")
            if not path:
                raise CredentialsProblem(f"environment variable `{name}` (a credentials file path) is not set")
        try:
            return Path(path).read_text(encoding="utf-8"), f"credentials file `{path}`"
        except OSError as exc:
            raise CredentialsProblem(f"credentials file `{path}` cannot be read: {exc.strerror}") from None
    return None


def check_credential_location(location: CredentialLocation) -> None:
    """Start-up check of the static locations: raises `CredentialsProblem`."""
    problems = []
    for loc in _locations(location):
        try:
            found = _static_text(loc)
        except CredentialsProblem as exc:
            problems.append(str(exc))
            continue
        if found is not None:
            service_account_info(*found)
        return
    raise CredentialsProblem("; ".join(problems))


class GCPTokens:
    """Access tokens for the credentials one provider is configured with. Static credentials
    are read once; `dynamic::` ones come with each request and are cached by their key id."""

    def __init__(self, location: CredentialLocation, provider_type: str):
        self._location = location
        self._provider_type = provider_type
        self._static: Any = None
        self._by_key: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    def _credentials(self, credentials: dict[str, str]) -> Any:
        problems = []
        for loc in _locations(self._location):
            kind, _, name = loc.partition("::")
            if kind == "dynamic":
                text = credentials.get(name)
                if not text:
                    problems.append(f"`{loc}` was not given with the request")
                    continue
                info = service_account_info(text, f"dynamic credential `{name}`")
                key = f"{info['client_email']}/{info.get('private_key_id', '')}"
                if key not in self._by_key:
                    self._by_key[key] = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
                return self._by_key[key]
            if self._static is None:
                if kind == "sdk":
                    self._static, _ = google.auth.default(scopes=[SCOPE])
                else:
                    try:
                        text, where = _static_text(loc)
                    except CredentialsProblem as exc:
                        problems.append(str(exc))
                        continue
                    info = service_account_info(text, where)
                    self._static = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
            return self._static
        raise ApiKeyMissing(self._provider_type, "; ".join(problems))

    async def token(self, credentials: dict[str, str]) -> str:
        try:
            creds = self._credentials(credentials)
        except CredentialsProblem as exc:
            raise ApiKeyMissing(self._provider_type, str(exc)) from None
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise ApiKeyMissing(self._provider_type, f"no application default credentials: {exc}") from None
        async with self._lock:
            # `valid` turns false a few minutes before expiry, so a token is refreshed early.
            if not creds.valid:
                try:
                    await asyncio.to_thread(creds.refresh, google.auth.transport.requests.Request())
                except google.auth.exceptions.GoogleAuthError as exc:
                    raise ProviderError(
                        f"Error from {self._provider_type} client: could not get an access token: {exc}",
                        provider_type=self._provider_type,
                        status_code=401,
                    ) from None
        return creds.token
