"""Past capacity the gateway answers new work with a fast 503 and `Retry-After`, keeps serving
reads, and takes work again once it has caught up."""

from __future__ import annotations

import asyncio
import time

import httpx

from tensorzero_ray.api.admission import LoadShedder
from tensorzero_ray.api.gateway import create_app
from tensorzero_ray.functions.routers import LocalRouters

HELLO = {"system": {"assistant_name": "Alfred"}, "messages": [{"role": "user", "content": "Hello"}]}


def on_own_loop(test):
    """These tests stall their event loop on purpose: not the session's, where the shared
    gateway would see the stall too."""

    def run():
        asyncio.run(test())

    run.__name__ = test.__name__
    return run


@on_own_loop
async def test_one_pause_is_not_an_overload():
    shedder = LoadShedder()
    shedder.ensure_started()
    await asyncio.sleep(0.15)
    time.sleep(0.3)  # a garbage collection, say
    await asyncio.sleep(0.05)
    assert not shedder.overloaded and shedder.refusal() is None


@on_own_loop
async def test_a_late_event_loop_sheds_new_work_then_recovers():
    shedder = LoadShedder()
    shedder.ensure_started()
    await asyncio.sleep(0.15)
    assert shedder.refusal() is None and not shedder.overloaded
    for _ in range(25):  # every turn of the loop is slow, as under a CPU-bound burst
        time.sleep(0.015)
        await asyncio.sleep(0)
    assert shedder.overloaded and shedder.admitted_share < 1.0
    assert shedder.refusal() is None  # too few requests in flight to wait behind each other
    shedder.in_flight = shedder.min_queue
    refusals = [shedder.refusal() for _ in range(200)]
    assert any(r is not None and "event loop" in r for r in refusals)
    shedder.in_flight = 0
    for _ in range(600):  # punctual intervals give the share back, a twentieth at a time
        if shedder.admitted_share == 1.0:
            break
        await asyncio.sleep(0.01)
    assert shedder.refusal() is None and not shedder.overloaded


async def test_an_overloaded_gateway_answers_503_with_retry_after(config):
    shedder = LoadShedder(max_in_flight=1)
    routers = LocalRouters(config, None)
    app = create_app(config, routers, None, shedder=shedder)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as client:
        served = await client.post("/inference", json={"function_name": "basic_test", "input": HELLO})
        assert served.status_code == 200
        shedder.in_flight = 1  # as if one request were running
        refused = await client.post("/inference", json={"function_name": "basic_test", "input": HELLO})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "over capacity" in refused.json()["error"]
        openai = await client.post("/openai/v1/chat/completions", json={"model": "x", "messages": []})
        assert openai.status_code == 503
        assert (await client.get("/status")).status_code == 200
        shedder.in_flight = 0
        again = await client.post("/inference", json={"function_name": "basic_test", "input": HELLO})
        assert again.status_code == 200
    assert shedder.refused == 2
    await routers.aclose()
