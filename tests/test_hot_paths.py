"""The hot endpoints skip FastAPI's router; what a request gets must not depend on that. The
same requests, good and bad, go to the gateway with and without the hot paths, and the
answers (status, content type, body less the ids minted per request) are the same."""

from __future__ import annotations

import re

import httpx
import pytest

from tensorzero_ray.api.gateway import create_app
from tensorzero_ray.api.hot_paths import HotPaths
from tensorzero_ray.functions.routers import LocalRouters

HELLO = {"system": {"assistant_name": "Ada"}, "messages": [{"role": "user", "content": "Hi"}]}
JSON = {"content-type": "application/json"}
REQUESTS = [
    ("/inference", {"function_name": "basic_test", "variant_name": "echo", "input": HELLO}, JSON),
    ("/inference", {"function_name": "basic_test", "variant_name": "echo", "input": HELLO, "stream": True}, JSON),
    ("/inference", {"function_name": "no_such_function", "input": HELLO}, JSON),
    ("/inference", {"function_name": "basic_test", "input": {"messages": "not a list"}}, JSON),
    ("/inference", b"{not json", JSON),
    ("/inference", [1, 2], JSON),
    ("/feedback", {"metric_name": "thumbs_up", "value": "yes", "inference_id": "0190d4a0-0000-7000-8000-000000000001"}, JSON),
    ("/feedback", {"metric_name": "no_such_metric", "value": True, "episode_id": "not-a-uuid"}, JSON),
    ("/openai/v1/chat/completions", {"model": "tensorzero::function_name::basic_test::variant_name::echo",
                                     "messages": [{"role": "system", "content": [{"type": "text", "tensorzero::arguments": {"assistant_name": "Ada"}}]},
                                                  {"role": "user", "content": "Hi"}]}, JSON),
    ("/openai/v1/chat/completions", {"model": "tensorzero::function_name::no_such_function", "messages": []}, JSON),
    ("/openai/v1/chat/completions", {"model": "gpt-4o"}, {"content-type": "text/plain"}),
]  # fmt: skip
MINTED = re.compile(rb'"(?:inference_id|episode_id|id|feedback_id|created)":\s*("[^"]*"|\d+)')


def comparable(response: httpx.Response) -> tuple:
    return response.status_code, response.headers.get("content-type"), MINTED.sub(b"", response.content)


@pytest.fixture(scope="module")
async def both(config, observability):
    """(with hot paths, through FastAPI's router only)."""
    clients, routers = [], []
    for hot in (True, False):
        routers.append(LocalRouters(config, observability))
        app = create_app(config, routers[-1], observability)
        if not hot:
            next(m for m in app.user_middleware if m.cls is HotPaths).kwargs["handlers"].clear()
        clients.append(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost"))
    yield clients
    for client, router in zip(clients, routers):
        await client.aclose()
        await router.aclose()


@pytest.mark.parametrize(("path", "body", "headers"), REQUESTS)
async def test_a_hot_path_answers_as_the_router_does(both, path, body, headers):
    hot, routed = both
    content = body if isinstance(body, bytes) else None
    payload = None if isinstance(body, bytes) else body
    answers = [
        await client.post(path, content=content, json=payload if content is None else None, headers=headers)
        for client in (hot, routed)
    ]
    assert comparable(answers[0]) == comparable(answers[1])


async def test_other_methods_and_paths_still_go_through_the_router(both):
    hot, _ = both
    assert (await hot.get("/inference")).status_code == 405
    assert (await hot.post("/inference/extra", json={})).status_code == 404
