"""The surface under hostile input: stored files never render as pages, URL fetches never
reach private addresses, UI forms only from the UI's own pages, hosts and body sizes checked,
security headers on every page, and caller input that used to crash answers 400."""

from __future__ import annotations

import base64
import ipaddress
import uuid

import orjson
import pytest

from tensorzero_ray.inference.url_fetch import FetchPolicy, FetchRefused
from tests.conftest import GATEWAY_ORIGIN

HELLO = {"system": {"assistant_name": "Alfred"}, "messages": [{"role": "user", "content": "Hello"}]}
FETCH_FAILED = "could not fetch the file at its URL"


def file_input(block: dict) -> dict:
    return {"messages": [{"role": "user", "content": [{"type": "text", "text": "Look"}, block]}]}


async def test_a_stored_html_file_is_served_as_an_inert_attachment(gateway, observability):
    html = base64.b64encode(b"<html><script>alert(document.cookie)</script></html>").decode()
    block = {"type": "file", "file_type": "base64", "data": html, "mime_type": "text/html"}
    r = await gateway.post(
        "/inference", json={"function_name": "weighted", "input": file_input(block), "dryrun": False}
    )
    assert r.status_code == 200, r.text
    page = await gateway.get(f"/ui/observability/inferences/{r.json()['inference_id']}")
    path = page.text.split("/ui/object_storage?path=", 1)[1].split('"', 1)[0].replace("%2F", "/")
    stored = await gateway.get("/ui/object_storage", params={"path": path})
    assert stored.status_code == 200
    assert stored.headers["content-type"] == "application/octet-stream"
    assert stored.headers["content-disposition"].startswith("attachment")
    assert stored.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in stored.headers["content-security-policy"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x.png",  # loopback, closed port
        "http://127.0.0.1:8265/api/version",  # loopback, the Ray dashboard's port
        "http://localhost/x.png",  # a name that resolves to loopback
        "http://[::1]/x.png",
        "http://[::ffff:127.0.0.1]/x.png",
        "http://169.254.169.254/latest/meta-data/",  # link-local: cloud metadata
        "http://10.0.0.1/x.png",
        "http://192.168.1.1/x.png",
    ],
)
async def test_private_file_urls_are_refused_with_one_message(gateway, url):
    r = await gateway.post(
        "/inference", json={"function_name": "weighted", "input": file_input({"type": "image", "url": url})}
    )
    assert r.status_code == 400, r.text
    assert FETCH_FAILED in r.json()["error"]
    assert url not in r.json()["error"]


async def test_an_allowed_host_that_fails_reads_the_same_as_a_refusal(gateway, openai_mock):
    missing = await gateway.post(
        "/inference",
        json={
            "function_name": "weighted",
            "input": file_input({"type": "image", "url": f"{openai_mock.url}/files/none.png"}),
        },
    )
    refused = await gateway.post(
        "/inference",
        json={"function_name": "weighted", "input": file_input({"type": "image", "url": "http://127.0.0.1:9/x.png"})},
    )
    assert missing.status_code == refused.status_code == 400
    assert missing.json()["error"] == refused.json()["error"]


def test_the_fetch_policy():
    policy = FetchPolicy(["files.internal", "10.1.0.0/16", "127.0.0.1:8080"])
    ip = ipaddress.ip_address
    assert policy.allows(ip("93.184.215.14"), "example.com", 80)
    assert not policy.allows(ip("127.0.0.1"), "127.0.0.1", 80)
    assert policy.allows(ip("127.0.0.1"), "127.0.0.1", 8080)
    assert policy.allows(ip("10.1.2.3"), "10.1.2.3", 80)
    assert not policy.allows(ip("10.2.0.1"), "10.2.0.1", 80)
    assert policy.allows(ip("192.168.0.9"), "files.internal", 443)
    assert not policy.allows(ip("::ffff:169.254.169.254"), "x", 80)
    assert not policy.allows(ip("100.64.0.1"), "x", 80)  # carrier-grade NAT
    assert not policy.allows(ip("224.0.0.1"), "x", 80)


async def test_the_fetch_policy_checks_what_a_name_resolves_to():
    with pytest.raises(FetchRefused):
        await FetchPolicy().resolve("localhost", 80)
    assert await FetchPolicy(["localhost"]).resolve("localhost", 80) in ("127.0.0.1", "::1")


@pytest.mark.parametrize("url", ["javascript:alert(1)", "file:///etc/passwd", "data:text/html,<b>x</b>"])
async def test_non_http_file_urls_are_refused_on_every_path(gateway, url):
    inference = await gateway.post(
        "/inference", json={"function_name": "weighted", "input": file_input({"type": "image", "url": url})}
    )
    assert inference.status_code == 400 and "file URLs must be http:// or https://" in inference.text
    datapoint = await gateway.post(
        f"/v1/datasets/hostile_{uuid.uuid4().hex[:6]}/datapoints",
        json={
            "datapoints": [
                {"type": "chat", "function_name": "weighted", "input": file_input({"type": "image", "url": url})}
            ]
        },
    )
    assert datapoint.status_code == 400 and "file URLs must be http:// or https://" in datapoint.text
    openai = await gateway.post(
        "/openai/v1/chat/completions",
        json={
            "model": "tensorzero::function_name::basic_test",
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}],
        },
    )
    assert openai.status_code == 400


async def _dataset_with_one_point(gateway) -> str:
    dataset = f"guarded_{uuid.uuid4().hex[:8]}"
    r = await gateway.post(
        f"/v1/datasets/{dataset}/datapoints",
        json={"datapoints": [{"type": "chat", "function_name": "basic_test", "input": HELLO}]},
    )
    assert r.status_code == 200, r.text
    return dataset


@pytest.mark.parametrize(
    "headers, fragment",
    [
        ({"origin": "https://evil.example"}, "cross-site request refused"),
        ({"cookie": "unrelated=1"}, "no Origin or Referer was sent"),
        ({"origin": GATEWAY_ORIGIN, "cookie": "unrelated=1"}, "security token is missing"),
        ({"origin": GATEWAY_ORIGIN, "cookie": "tzray_csrf=" + "a" * 43}, "does not match"),
    ],
)
async def test_a_cross_site_form_cannot_delete_a_dataset(gateway, headers, fragment):
    dataset = await _dataset_with_one_point(gateway)
    r = await gateway.post(f"/ui/datasets/{dataset}/delete", headers=headers, data={"csrf_token": "b" * 43})
    assert r.status_code == 403 and fragment in r.text
    listed = await gateway.post(f"/v1/datasets/{dataset}/list_datapoints", json={})
    assert len(listed.json()["datapoints"]) == 1


async def test_the_ui_own_form_deletes(gateway, ui_post):
    dataset = await _dataset_with_one_point(gateway)
    r = await ui_post(f"/ui/datasets/{dataset}/delete", {})
    assert r.status_code == 303
    listed = await gateway.post(f"/v1/datasets/{dataset}/list_datapoints", json={})
    assert listed.status_code == 404 or listed.json()["datapoints"] == []


async def test_json_routes_refuse_simple_cross_site_posts(gateway):
    body = '{"metric_name": "thumbs_up", "value": true, "inference_id": "0196c682-72e0-7c83-a92b-9d1a3c7630f2"}'
    r = await gateway.post(
        "/feedback", content=body, headers={"content-type": "text/plain", "origin": "https://evil.example"}
    )
    assert r.status_code == 403 and "Cross-site request" in r.json()["error"]
    same_site = await gateway.post(
        "/inference", json={"function_name": "basic_test", "input": HELLO}, headers={"origin": GATEWAY_ORIGIN}
    )
    assert same_site.status_code == 200


async def test_unknown_hosts_get_no_ui(gateway):
    r = await gateway.get("/ui/", headers={"host": "attacker.example"})
    assert r.status_code == 400 and "attacker.example" in r.text
    assert (await gateway.get("/ui/", headers={"host": "127.0.0.1:8000"})).status_code == 200


async def test_configured_ui_hosts_are_served(config):
    import httpx

    from tensorzero_ray.ui.app import create_ui_app

    allowed = config.model_copy(deep=True)
    allowed.gateway.security.ui_allowed_hosts = ["ui.example.com"]
    transport = httpx.ASGITransport(app=create_ui_app(allowed, None))
    async with httpx.AsyncClient(transport=transport, base_url="http://ui.example.com") as client:
        assert (await client.get("/config")).status_code == 200
        assert (await client.get("/config", headers={"host": "other.example.com"})).status_code == 400


@pytest.mark.parametrize("path", ["/ui/", "/ui/observability/inferences", "/ui/no/such/page", "/ui/datasets"])
async def test_every_ui_page_has_security_headers(gateway, path):
    r = await gateway.get(path)
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-eval" not in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "onsubmit=" not in r.text and "onchange=" not in r.text


async def test_ui_bodies_over_the_limit_are_413(gateway):
    r = await gateway.post(
        "/ui/datasets/builder", content=b"x" * (11 * 1024 * 1024), headers={"origin": GATEWAY_ORIGIN}
    )
    assert r.status_code == 413


DEEP = "@deep@"


def with_deep_value(body: dict, levels: int = 500) -> str:
    """`body` as JSON text with `DEEP` replaced by a value nested `levels` deep (too deep for
    a recursive encoder to write, within what the JSON parser reads)."""
    return orjson.dumps(body).decode().replace(f'"{DEEP}"', '{"a":' * levels + "1" + "}" * levels)


async def test_caller_input_that_crashed_is_a_400_naming_it(gateway, openai_mock):
    inference = (await gateway.post("/inference", json={"function_name": "basic_test", "input": HELLO})).json()
    country = {"messages": [{"role": "user", "content": {"country": "Peru"}}]}
    json_inference = (await gateway.post("/inference", json={"function_name": "json_success", "input": country})).json()
    chat = "tensorzero::function_name::basic_test"
    cases = [
        ("/feedback", {"metric_name": "thumbs_up", "value": True, "inference_id": ""}, "Invalid Inference ID"),
        ("/feedback", {"metric_name": "comment", "value": DEEP, "inference_id": inference["inference_id"]}, "nested"),
        (
            "/feedback",
            {"metric_name": "demonstration", "value": DEEP, "inference_id": json_inference["inference_id"]},
            "nested",
        ),
        ("/inference", {"function_name": "json_success", "input": country, "output_schema": DEEP}, "nested"),
        (
            "/openai/v1/chat/completions",
            {"model": chat, "messages": [{"role": "user", "content": [{"type": DEEP}]}]},
            "nested",
        ),
        (
            "/openai/v1/chat/completions",
            {"model": chat, "messages": [{"role": "user", "content": [{"type": {"x": 1}}]}]},
            "type must be a string",
        ),
        (
            "/openai/v1/chat/completions",
            {
                "model": chat,
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "http://x/y.png"}]}],
            },
            "image_url must be an object",
        ),
        (
            "/openai/v1/chat/completions",
            {"model": chat, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": ["a"]}]}]},
            "image_url must be an object",
        ),
    ]
    for path, body, fragment in cases:
        r = await gateway.post(path, content=with_deep_value(body), headers={"content-type": "application/json"})
        assert r.status_code == 400, (path, r.status_code, r.text[:300])
        assert fragment in r.text, (path, r.text[:300])


@pytest.mark.parametrize(
    "path",
    [
        "/ui/datasets/a%00b",
        "/ui/observability/functions/%00",
        "/ui/object_storage?path=%00",
        "/v1/datasets/%00/list_datapoints",
    ],
)
async def test_nul_bytes_in_paths_are_a_400(gateway, path):
    r = await (gateway.get(path) if path.startswith("/ui") else gateway.post(path, json={}))
    assert r.status_code in (400, 404), r.text[:300]


HEAVY_TEMPLATES = [
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "steps"),
    ("{{ 'x' * 100000000 }}", "characters"),
    ("{{ 'x' | center(100000000) }}", "width"),
    ("{% for i in range(100000) %}{{ assistant_name * 20 }}{% endfor %}", "limits"),
]


@pytest.mark.parametrize("template, fragment", HEAVY_TEMPLATES)
async def test_request_templates_run_within_limits_off_the_event_loop(gateway, template, fragment):
    import asyncio

    body = {
        "function_name": "basic_test",
        "input": HELLO,
        "dryrun": True,
        "internal_dynamic_variant_config": {
            "type": "chat_completion",
            "model": "dummy::good",
            "system_template": {"path": "inline", "contents": template},
        },
    }
    heavy = [asyncio.create_task(gateway.post("/inference", json=body)) for _ in range(4)]
    status = await gateway.get("/status")
    answers = await asyncio.gather(*heavy)
    assert status.status_code == 200
    for r in answers:
        assert r.status_code == 400, r.text
        assert "exceeded its limits" in r.json()["error"] and fragment in r.json()["error"]
