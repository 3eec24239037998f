"""Region and credentials for the AWS providers, and SigV4 signing with botocore: from the
config, the request (`dynamic::`), the environment, or botocore's own chain (`sdk`: profiles,
SSO, instance roles). Bedrock's API keys are sent as bearer tokens instead."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import botocore.session
import orjson
import yarl
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tensorzero_ray.config.credentials import CredentialLocation, resolve_credential
from tensorzero_ray.errors import ApiKeyMissing

BEARER_TOKEN_VARIABLE = "AWS_BEARER_TOKEN_BEDROCK"


class AWSConfigProblem(ValueError):
    """Names the key that cannot work; never its value."""


def _sdk_region() -> str | None:
    """AWS_REGION as the other AWS SDKs read it, then botocore's chain (AWS_DEFAULT_REGION,
    the profile's config)."""
    return os.environ.get("AWS_REGION") or botocore.session.Session().get_config_variable("region")


def region_problem(region: str | None, auto_detect: bool) -> str | None:
    """What is wrong with a provider's region at start-up, or None."""
    if region is None:
        if not auto_detect:
            return "`region` is required (or set `allow_auto_detect_region = true` to take the SDK's region)"
        region = "sdk"
    kind, sep, name = region.partition("::")
    if region == "sdk" and _sdk_region() is None:
        return "no region found by the AWS SDK (set AWS_REGION or a profile's region, or `region`)"
    if sep and kind == "env" and not os.environ.get(name):
        return f"`region` names environment variable `{name}`, which is not set"
    return None


def credential_problem(config: Any) -> tuple[str, str] | None:
    """(key, problem) for static credentials named in the config that are not there."""
    for key in ("api_key", "access_key_id", "secret_access_key", "session_token"):
        location = getattr(config, key, None)
        if isinstance(location, str) and location.startswith("env::"):
            name = location.removeprefix("env::")
            if not os.environ.get(name):
                return key, f"environment variable `{name}` is not set"
    return None


class AWSAuth:
    """Signs requests for one provider (`service`: the SigV4 signing name)."""

    def __init__(self, config: Any, service: str, provider_type: str):
        self._config = config
        self._service = service
        self._provider_type = provider_type
        self._sdk_credentials: Any = None

    def region(self, credentials: dict[str, str]) -> str:
        region = self._config.region
        if region is None or region == "sdk":
            found = _sdk_region()
        elif region.startswith(("env::", "dynamic::", "path::")):
            secret = resolve_credential(region, credentials, self._provider_type)
            found = None if secret is None else secret.get_secret_value()
        else:
            found = region
        if not found:
            raise ApiKeyMissing(self._provider_type, "no AWS region")
        return found

    def _location(self, location: CredentialLocation, credentials: dict[str, str]) -> str | None:
        secret = resolve_credential(location, credentials, self._provider_type)
        return None if secret is None else secret.get_secret_value()

    async def headers(
        self, method: str, url: str, body: bytes, headers: dict[str, str], region: str, credentials: dict[str, str]
    ) -> dict[str, str]:
        """`headers` plus the authorization for exactly this method, URL and body."""
        config = self._config
        bearer = None
        if config.api_key is not None:
            bearer = self._location(config.api_key, credentials)
        elif config.access_key_id is None and os.environ.get(BEARER_TOKEN_VARIABLE) and self._service == "bedrock":
            bearer = os.environ[BEARER_TOKEN_VARIABLE]
        if bearer:
            return {**headers, "authorization": f"Bearer {bearer}"}
        keys = await self._credentials(credentials)
        request = AWSRequest(method=method, url=url, data=body, headers=headers)
        SigV4Auth(keys, self._service, region).add_auth(request)
        return dict(request.headers.items())

    async def signed_post(
        self, url_for: Callable[[str], str], body: dict, headers: dict[str, str], credentials: dict[str, str]
    ) -> tuple[yarl.URL, str, dict[str, str]]:
        """(URL, raw request, signed headers) for a JSON POST; `url_for(region)` gives the URL.
        The URL is kept as encoded, since the signature covers its path (`:` in model ids)."""
        region = self.region(credentials)
        url = url_for(region)
        raw_request = orjson.dumps(body).decode()
        signed = await self.headers("POST", url, raw_request.encode(), headers, region, credentials)
        return yarl.URL(url, encoded=True), raw_request, signed

    async def _credentials(self, credentials: dict[str, str]) -> Any:
        config = self._config
        if config.access_key_id is not None:
            access = self._location(config.access_key_id, credentials)
            secret = self._location(config.secret_access_key, credentials)
            token = self._location(config.session_token, credentials) if config.session_token is not None else None
            return Credentials(access, secret, token)
        if self._sdk_credentials is None:
            # The SDK chain may read files or ask the instance metadata service: off the loop.
            self._sdk_credentials = await asyncio.to_thread(botocore.session.Session().get_credentials)
            if self._sdk_credentials is None:
                raise ApiKeyMissing(
                    self._provider_type,
                    "no AWS credentials: set `access_key_id` and `secret_access_key`, `api_key`, "
                    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or a profile",
                )
        # Refreshable credentials (roles, SSO) may fetch new keys when read.
        return await asyncio.to_thread(self._sdk_credentials.get_frozen_credentials)
