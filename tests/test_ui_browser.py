"""The web UI in a real browser (Debian's Chromium driven by Playwright) against the live
stack `tzray up` starts, seeded through the gateway: every page renders, filters change the
rows, feedback added on an inference page is stored, and the dataset builder creates
datapoints."""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime

import httpx
import pytest

from tensorzero_ray.ui.chromium import CHROMIUM_ARGS, chromium_path

CHROMIUM = chromium_path()

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def seeded(serve_url) -> dict:
    suite = uuid.uuid4().hex
    ids = []
    with httpx.Client(base_url=serve_url, timeout=60) as http:
        for n in range(12):
            body = {
                "function_name": "chat",
                "input": {"system": {"assistant_name": "Ada"}, "messages": [{"role": "user", "content": f"Hi #{n}"}]},
                "tags": {"suite": suite, "half": "first" if n < 6 else "second"},
            }
            r = http.post("/inference", json=body)
            assert r.status_code == 200, r.text
            ids.append(r.json()["inference_id"])
        for inference_id in ids[:4]:
            feedback = {"metric_name": "thumbs_up", "inference_id": inference_id, "value": True}
            assert http.post("/feedback", json=feedback).status_code == 200
        query = {"filters": {"type": "tag", "key": "suite", "value": suite}, "limit": 100}
        deadline = time.monotonic() + 30
        while len(http.post("/v1/inferences/list_inferences", json=query).json()["inferences"]) < len(ids):
            assert time.monotonic() < deadline, "seeded inferences never became visible"
            time.sleep(0.2)  # the writer flushes once a second; nothing to await from outside
    return {"suite": suite, "ids": ids, "url": serve_url}


@pytest.fixture(scope="module")
def page(seeded):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield page
        browser.close()


def table_rows(page) -> int:
    return page.locator("table.data tbody tr td a[href*='/observability/inferences/']").count()


def test_every_page_renders(page, seeded):
    url = seeded["url"]
    inference = seeded["ids"][0]
    paths = [
        "/ui/",
        "/ui/observability/inferences",
        f"/ui/observability/inferences/{inference}",
        "/ui/observability/episodes",
        "/ui/observability/functions",
        "/ui/observability/functions/chat",
        "/ui/observability/functions/chat/variants/baseline",
        "/ui/observability/models",
        "/ui/datasets",
        "/ui/datasets/builder",
        "/ui/config",
        "/ui/health",
        "/ui/api-keys",
    ]
    for path in paths:
        response = page.goto(url + path)
        assert response.status == 200, path
        assert page.locator("h1").first.is_visible(), path
        assert page.locator(".alert").count() == 0, path
    page.goto(url + "/ui/observability/functions/chat")
    assert page.locator("figure.chart svg").count() >= 2
    assert page.locator("figure.chart svg text.legend").count() >= 1


def test_an_unknown_inference_shows_not_found_with_a_way_back(page, seeded):
    response = page.goto(seeded["url"] + "/ui/observability/inferences/0196c682-72e0-7c83-a92b-9d1a3c7630f2")
    assert response.status == 404
    assert page.locator("h1").inner_text() == "Not found"
    page.get_by_role("link", name="Home").last.click()
    assert page.url.endswith("/ui/")


def test_filters_change_the_rows(page, seeded):
    page.goto(seeded["url"] + "/ui/observability/inferences")
    page.fill("input[name=tag_key]", "suite")
    page.fill("input[name=tag_value]", seeded["suite"])
    page.select_option("select[name=limit]", "50")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_load_state()
    assert table_rows(page) == 12
    page.select_option("select[name=metric]", "thumbs_up")
    page.fill("input[name=metric_value]", "true")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_load_state()
    assert table_rows(page) == 4
    assert "thumbs_up" in page.url


def test_feedback_added_on_the_inference_page_is_stored(page, seeded):
    inference_id = seeded["ids"][8]
    page.goto(f"{seeded['url']}/ui/observability/inferences/{inference_id}")
    # A boolean metric is a true/false control, not a text box.
    assert page.locator("select[name=metric_name] option[value=thumbs_up]").count() == 0
    control = page.locator("form.boolean-feedback", has_text="thumbs_up")
    control.get_by_role("button", name="false").click()
    page.wait_for_load_state()
    feedback_table = page.locator("#feedback table").inner_text()
    assert "thumbs_up" in feedback_table and "false" in feedback_table
    disliked = {
        "type": "and",
        "children": [
            {"type": "tag", "key": "suite", "value": seeded["suite"]},
            {"type": "boolean_metric", "metric_name": "thumbs_up", "value": False},
        ],
    }
    with httpx.Client(base_url=seeded["url"]) as http:
        found = http.post("/v1/inferences/list_inferences", json={"filters": disliked}).json()["inferences"]
    assert [i["inference_id"] for i in found] == [inference_id]


def test_the_dataset_builder_creates_datapoints(page, seeded):
    dataset = f"browser_{uuid.uuid4().hex[:8]}"
    page.goto(seeded["url"] + "/ui/datasets/builder")
    page.fill("input[name=dataset_name]", dataset)
    page.select_option("select[name=function]", "chat")
    page.fill("input[name=tag_key]", "suite")
    page.fill("input[name=tag_value]", seeded["suite"])
    page.get_by_role("button", name="Preview count").click()
    page.wait_for_load_state()
    assert page.locator("#preview-count strong").inner_text() == "12"
    page.get_by_role("button", name="Build dataset").click()
    page.wait_for_load_state()
    assert f"/ui/datasets/{dataset}" in page.url and "Added 12 datapoints" in page.content()
    with httpx.Client(base_url=seeded["url"]) as http:
        points = http.post(f"/v1/datasets/{dataset}/list_datapoints", json={"limit": 100}).json()["datapoints"]
    assert sorted(p["source_inference_id"] for p in points) == sorted(seeded["ids"])


def test_the_function_page_opens_on_the_metric_with_data(page, seeded):
    """The quickstart's first metric alphabetically (task_success) has no feedback here;
    thumbs_up has, so the page opens on it, with Wilson intervals for a boolean metric."""
    page.goto(seeded["url"] + "/ui/observability/functions/chat")
    assert page.locator("select[name=metric]").input_value() == "thumbs_up"
    caption = page.locator("#metrics figure.chart figcaption").inner_text()
    assert caption.startswith("thumbs_up") and "Wilson interval" in caption
    assert page.locator("#metrics figure.chart polyline").count() >= 1


def chart_facts(page) -> list[dict]:
    return page.evaluate(
        """() => [...document.querySelectorAll('figure.chart')].map(f => ({
            caption: f.querySelector('figcaption').innerText,
            legend: Object.fromEntries([...f.querySelectorAll('text.legend')].map(t =>
                [t.textContent, t.previousElementSibling.getAttribute('fill')])),
            xTicks: [...f.querySelectorAll('text.x-tick')].map(t => t.textContent),
            tickHeights: [...f.querySelectorAll('text.tick')].map(t => t.getBoundingClientRect().height),
        }))"""
    )


@pytest.mark.parametrize("path", ["/ui/observability/functions/chat", "/ui/observability/models"])
def test_charts_are_readable_with_round_ticks_and_one_colour_per_series(page, seeded, path):
    page.goto(seeded["url"] + path)
    charts = [c for c in chart_facts(page) if c["xTicks"]]
    assert charts, "no chart with data"
    colours: dict[str, str] = {}
    for chart in charts:
        assert min(chart["tickHeights"]) >= 11, f"axis text too small in {chart['caption']}"
        times = [datetime.strptime(t, "%H:%M:%S" if t.count(":") == 2 else "%H:%M") for t in chart["xTicks"]]
        seconds = [t.hour * 3600 + t.minute * 60 + t.second for t in times]
        steps = {b - a for a, b in zip(seconds, seconds[1:])}
        assert len(steps) <= 1, f"uneven ticks {chart['xTicks']}"
        step = steps.pop() if steps else 1
        assert all(s % step == 0 for s in seconds), f"ticks off round times: {chart['xTicks']}"
        for name, colour in chart["legend"].items():
            assert colours.setdefault(name, colour) == colour, f"{name} changes colour between charts"


def test_ids_show_prefix_and_suffix_and_feedback_links_its_target(page, seeded):
    page.goto(seeded["url"] + "/ui/observability/inferences?tag_key=suite&tag_value=" + seeded["suite"])
    shown = page.locator("table.data tbody a[href*='/observability/inferences/']").all_inner_texts()
    assert len(shown) == 12 and len(set(shown)) == 12
    assert all(re.fullmatch(r"[0-9a-f]{8}…[0-9a-f]{4}", text) for text in shown)
    page.goto(seeded["url"] + "/ui/")
    target = page.locator("table.data", has_text="Target").locator("tbody tr td a").first
    href = target.get_attribute("href")
    assert "/observability/inferences/" in href or "/observability/episodes/" in href
    target.click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text().startswith(("Inference", "Episode"))
