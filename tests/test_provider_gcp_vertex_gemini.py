"""Gemini on Vertex AI: service-account tokens from google-auth against a token endpoint that
checks the JWT's signature, token refresh, the regional URL, and start-up checks."""

from __future__ import annotations

import json

import pytest
from pydantic import TypeAdapter

from tensorzero_ray.config import ConfigError, load_config
from tensorzero_ray.config.models import ProviderConfig
from tensorzero_ray.errors import ApiKeyMissing
from tensorzero_ray.providers import CallContext, build_provider
from tensorzero_ray.types import FinishReason, Text, TextChunk
from tensorzero_ray.types.model import ModelInferenceRequest, RequestMessage

PROVIDER = TypeAdapter(ProviderConfig)


def provider(mock, credentials: str, **fields):
    config = PROVIDER.validate_python(
        {
            "type": "gcp_vertex_gemini",
            "model_id": "gemini-ok",
            "location": "us-central1",
            "project_id": "test-project",
            "credential_location": credentials,
            "api_base": f"{mock.url}/v1/",
            **fields,
        }
    )
    return build_provider("p", config, timeout_s=5)


def request() -> ModelInferenceRequest:
    return ModelInferenceRequest(messages=[RequestMessage(role="user", content=[Text(text="Hi")])], max_tokens=20)


async def test_a_service_account_file_gives_a_bearer_token(google_mock, service_account_file):
    gemini = provider(google_mock, f"path::{service_account_file}")
    issued = google_mock.tokens_issued
    response = await gemini.infer(request(), CallContext())
    sent = google_mock.last()
    assert (
        sent["path"]
        == "/v1/projects/test-project/locations/us-central1/publishers/google/models/gemini-ok:generateContent"
    )
    assert sent["headers"]["authorization"] == f"Bearer ya29.mock-{issued + 1}"
    assert response.content == [Text(text="Hello from Gemini mock")]
    await gemini.infer(request(), CallContext())
    assert google_mock.tokens_issued == issued + 1, "a valid token is reused"


async def test_a_token_near_expiry_is_refreshed(google_mock, service_account_file):
    gemini = provider(google_mock, f"path::{service_account_file}")
    google_mock.token_lifetime_s = 60  # inside google-auth's refresh margin: stale at once
    try:
        issued = google_mock.tokens_issued
        await gemini.infer(request(), CallContext())
        await gemini.infer(request(), CallContext())
        assert google_mock.tokens_issued == issued + 2
        assert google_mock.last()["headers"]["authorization"] == f"Bearer ya29.mock-{issued + 2}"
    finally:
        google_mock.token_lifetime_s = 3600


async def test_streaming_and_deployed_endpoints(google_mock, service_account_file):
    gemini = provider(google_mock, f"path::{service_account_file}", model_id=None, endpoint_id="1234")
    chunks = [c async for c in gemini.stream(request(), CallContext())]
    assert google_mock.last()["path"].endswith("/locations/us-central1/endpoints/1234:streamGenerateContent")
    assert "".join(p.text for c in chunks for p in c.content if isinstance(p, TextChunk)) == "Hello from Gemini mock"
    assert chunks[-1].finish_reason == FinishReason.STOP


async def test_dynamic_credentials_come_with_the_request(google_mock, service_account_file):
    gemini = provider(google_mock, "dynamic::gcp")
    response = await gemini.infer(request(), CallContext(credentials={"gcp": service_account_file.read_text()}))
    assert response.content == [Text(text="Hello from Gemini mock")]
    with pytest.raises(ApiKeyMissing, match="`dynamic::gcp` was not given"):
        await gemini.infer(request(), CallContext())


def test_the_global_location_has_no_region_prefix():
    config = PROVIDER.validate_python(
        {
            "type": "gcp_vertex_gemini",
            "model_id": "m",
            "location": "global",
            "project_id": "p",
            "credential_location": "sdk",
        }
    )
    url = build_provider("p", config, timeout_s=5).url(stream=False)
    assert (
        url
        == "https://aiplatform.googleapis.com/v1/projects/p/locations/global/publishers/google/models/m:generateContent"
    )


def test_model_id_or_endpoint_id_exactly_one():
    with pytest.raises(ValueError, match="exactly one of `model_id` or `endpoint_id`"):
        PROVIDER.validate_python({"type": "gcp_vertex_gemini", "location": "l", "project_id": "p"})


def _config(tmp_path, credentials: str):
    path = tmp_path / "tensorzero.toml"
    path.write_text(
        f"""
[models.gemini]
routing = ["vertex"]
[models.gemini.providers.vertex]
type = "gcp_vertex_gemini"
model_id = "gemini-2.5-flash"
location = "us-central1"
project_id = "p"
credential_location = "{credentials}"
"""
    )
    return path


def test_start_up_refuses_unusable_credentials_without_printing_them(tmp_path, service_account_file, monkeypatch):
    load_config(_config(tmp_path, f"path::{service_account_file}"))
    broken = json.loads(service_account_file.read_text())
    secret_line = broken["private_key"].splitlines()[1]
    broken["private_key"] = broken["private_key"].replace(secret_line, secret_line[::-1])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(broken))
    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, f"path::{bad}"))
    assert "credential_location" in str(caught.value) and "`private_key` is not a PEM-encoded RSA private key" in str(
        caught.value
    )
    assert secret_line[::-1] not in str(caught.value)
    with pytest.raises(ConfigError, match="credentials file `/nowhere.json` cannot be read"):
        load_config(_config(tmp_path, "path::/nowhere.json"))
    monkeypatch.delenv("GCP_VERTEX_CREDENTIALS_PATH", raising=False)
    with pytest.raises(ConfigError, match="`GCP_VERTEX_CREDENTIALS_PATH` .* is not set"):
        load_config(_config(tmp_path, "path_from_env::GCP_VERTEX_CREDENTIALS_PATH"))
    monkeypatch.setenv("VERTEX_JSON", '{"type": "authorized_user"}')
    with pytest.raises(ConfigError, match="not a service-account key"):
        load_config(_config(tmp_path, "env::VERTEX_JSON"))
