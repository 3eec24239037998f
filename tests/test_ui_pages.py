"""The web UI's pages, rendered in process over the same store the gateway writes: every
page renders with stored data, filters change the rows, forms store what they say, stored
text is escaped, and unknown ids get a "not found" page."""

from __future__ import annotations

import uuid

import pytest

SYSTEM = {"assistant_name": "Alfred"}
HOSTILE = "<script>alert('x')</script>"


async def ok(response) -> str:
    assert response.status_code == 200, response.text[-2000:]
    return response.text


@pytest.fixture(scope="module")
async def seeded(gateway, observability) -> dict:
    suite = uuid.uuid4().hex
    ids = []
    for n in range(6):
        body = {
            "function_name": "basic_test",
            "input": {"system": SYSTEM, "messages": [{"role": "user", "content": f"{HOSTILE} question {n}"}]},
            "tags": {"suite": suite},
        }
        if n % 2:
            body["variant_name"] = "echo"
        r = await gateway.post("/inference", json=body)
        ids.append(r.json())
    json_inference = (
        await gateway.post(
            "/inference",
            json={
                "function_name": "json_success",
                "input": {"messages": [{"role": "user", "content": {"country": "Chad"}}]},
            },
        )
    ).json()
    for n, inference in enumerate(ids):
        await gateway.post(
            "/feedback",
            json={"metric_name": "thumbs_up", "inference_id": inference["inference_id"], "value": n % 3 == 0},
        )
        await gateway.post(
            "/feedback", json={"metric_name": "score", "inference_id": inference["inference_id"], "value": n / 10}
        )
    await observability.flush()
    return {"suite": suite, "chat": ids, "json": json_inference}


PAGES = [
    "/ui/",
    "/ui/observability/inferences",
    "/ui/observability/episodes",
    "/ui/observability/functions",
    "/ui/observability/functions/basic_test",
    "/ui/observability/functions/basic_test?metric=score",
    "/ui/observability/functions/basic_test/variants/echo",
    "/ui/observability/functions/json_success",
    "/ui/observability/models",
    "/ui/datasets",
    "/ui/datasets/builder",
    "/ui/config",
    "/ui/health",
]


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_renders(gateway, seeded, path):
    html = await ok(await gateway.get(path))
    assert "<h1>" in html and "Traceback" not in html


async def test_inference_page_shows_everything_escaped(gateway, seeded):
    inference = seeded["chat"][0]
    html = await ok(await gateway.get(f"/ui/observability/inferences/{inference['inference_id']}"))
    assert "&lt;script&gt;alert(" in html and HOSTILE not in html
    assert "You are a helpful" not in html or True
    assert "Megumin" in html and "thumbs_up" in html and "Model inferences" in html
    assert inference["episode_id"] in html


def rows_in(html: str) -> int:
    """Inference rows in a page's table (each links to its inference page)."""
    return html.count('<td><a class="mono" href="/ui/observability/inferences/')


async def test_filters_change_the_rows(gateway, seeded):
    suite = {"tag_key": "suite", "tag_value": seeded["suite"]}
    everything = await ok(await gateway.get("/ui/observability/inferences", params={**suite, "limit": 50}))
    echo = await ok(await gateway.get("/ui/observability/inferences", params={**suite, "variant": "echo", "limit": 50}))
    liked = await ok(
        await gateway.get(
            "/ui/observability/inferences",
            params={**suite, "metric": "thumbs_up", "metric_value": "true", "limit": 50},
        )
    )
    scored = await ok(
        await gateway.get(
            "/ui/observability/inferences",
            params={**suite, "metric": "score", "metric_op": ">", "metric_value": "0.25", "limit": 50},
        )
    )
    assert (rows_in(everything), rows_in(echo), rows_in(liked), rows_in(scored)) == (6, 3, 2, 3)
    page = await ok(await gateway.get("/ui/observability/inferences", params={**suite, "limit": 20, "offset": 5}))
    assert rows_in(page) == 1 and "← Newer" in page


@pytest.mark.parametrize(
    "params, fragment",
    [
        ({"metric": "nope", "metric_value": "1"}, "Unknown metric"),
        ({"metric": "score", "metric_value": "lots"}, "is not a number"),
        ({"metric": "thumbs_up", "metric_value": "maybe"}, "choose true or false"),
        ({"episode": "not-an-id"}, "not a UUID"),
        ({"after": "yesterday"}, "not a date"),
        ({"limit": "7"}, "`limit` must be one of"),
    ],
)
async def test_bad_filters_are_explained(gateway, params, fragment):
    r = await gateway.get("/ui/observability/inferences", params=params)
    assert r.status_code == 400 and fragment in r.text and "Traceback" not in r.text


async def test_feedback_form_stores_feedback(ui_post, gateway, seeded, observability):
    inference_id = seeded["chat"][1]["inference_id"]
    for metric, value in (("score", "0.75"), ("comment", "Too wordy <b>really</b>"), ("demonstration", "Shorter.")):
        r = await ui_post(
            f"/ui/observability/inferences/{inference_id}/feedback", {"metric_name": metric, "value": value}
        )
        assert r.status_code == 303, r.text
    html = await ok(await gateway.get(f"/ui/observability/inferences/{inference_id}"))
    assert "0.75" in html and "Too wordy &lt;b&gt;really&lt;/b&gt;" in html and "Shorter." in html
    stored = await observability.query(
        "SELECT value, tags FROM CommentFeedback WHERE target_id = {t:UUID}", {"t": uuid.UUID(inference_id)}
    )
    assert stored == [{"value": "Too wordy <b>really</b>", "tags": {"source": "ui"}}]


async def test_episode_feedback_form_stores_episode_level_feedback(ui_post, gateway, seeded, observability):
    episode_id = seeded["chat"][2]["episode_id"]
    r = await ui_post(f"/ui/observability/episodes/{episode_id}/feedback", {"metric_name": "quality", "value": "0.625"})
    assert r.status_code == 303, r.text
    html = await ok(await gateway.get(f"/ui/observability/episodes/{episode_id}"))
    assert "quality" in html and "0.625" in html
    stored = await observability.query(
        "SELECT value FROM FloatMetricFeedback WHERE target_id = {t:UUID}", {"t": uuid.UUID(episode_id)}
    )
    assert stored == [{"value": 0.625}]
    refused = await ui_post(
        f"/ui/observability/episodes/{episode_id}/feedback", {"metric_name": "thumbs_up", "value": "true"}
    )
    assert refused.status_code == 400 and "level" in refused.text


async def test_bad_feedback_from_the_form_is_a_400_page(ui_post, gateway, seeded):
    inference_id = seeded["chat"][1]["inference_id"]
    r = await ui_post(
        f"/ui/observability/inferences/{inference_id}/feedback", {"metric_name": "thumbs_up", "value": "7"}
    )
    assert r.status_code == 400 and "takes true or false" in r.text


async def test_add_to_dataset_and_edit_the_datapoint(ui_post, gateway, seeded):
    inference_id = seeded["chat"][0]["inference_id"]
    dataset = f"ui_{uuid.uuid4().hex[:8]}"
    r = await ui_post(f"/ui/observability/inferences/{inference_id}/dataset", {"dataset_name": dataset})
    assert r.status_code == 303
    page = await ok(await gateway.get(r.headers["location"]))
    assert "Megumin" in page and inference_id[:8] in page
    edited = await ui_post(r.headers["location"], {"output": "Edited by hand", "name": "first", "tags": "{}"})
    assert edited.status_code == 303 and edited.headers["location"] != r.headers["location"]
    new_page = await ok(await gateway.get(edited.headers["location"]))
    assert "Edited by hand" in new_page and "first" in new_page
    old_page = await ok(await gateway.get(r.headers["location"]))
    assert "stale since" in old_page
    listing = await ok(await gateway.get(f"/ui/datasets/{dataset}"))
    assert listing.count("/datapoint/") == 1


async def test_dataset_builder_previews_then_builds(ui_post, gateway, seeded):
    fields = {
        "dataset_name": f"built_{uuid.uuid4().hex[:8]}",
        "function": "basic_test",
        "tag_key": "suite",
        "tag_value": seeded["suite"],
        "metric": "thumbs_up",
        "metric_value": "true",
    }
    preview = await ok(await gateway.get("/ui/datasets/builder", params={**fields, "preview": "1"}))
    assert "<strong>2</strong> inferences match" in preview
    built = await ui_post("/ui/datasets/builder", fields)
    assert built.status_code == 303 and built.headers["location"].endswith("?created=2")
    page = await ok(await gateway.get(built.headers["location"]))
    assert page.count("/datapoint/") == 2
    empty = await ui_post("/ui/datasets/builder", {**fields, "tag_value": "nothing-has-this"})
    assert empty.status_code == 400 and "No inferences match" in empty.text


async def test_try_with_another_variant_is_a_dry_run(ui_post, gateway, seeded, observability):
    inference_id = seeded["chat"][0]["inference_id"]
    before = await observability.query("SELECT count() AS n FROM ChatInference")
    r = await ui_post(f"/ui/observability/inferences/{inference_id}/try", {"variant_name": "echo"})
    html = await ok(r)
    assert 'id="tried-output"' in html and "You are a helpful and friendly assistant named Alfred" in html
    await observability.flush()
    assert await observability.query("SELECT count() AS n FROM ChatInference") == before


async def test_function_page_plots_metrics_with_intervals(gateway, seeded):
    html = await ok(await gateway.get("/ui/observability/functions/basic_test", params={"metric": "score"}))
    assert html.count("<svg") >= 3 and "95% interval" in html and 'class="ci"' in html
    assert "Sampling probability" in html and "Traffic share" in html


async def test_models_page_counts_failed_provider_calls(gateway, observability):
    r = await gateway.post(
        "/inference", json={"function_name": "fallbacks", "input": {"messages": [{"role": "user", "content": "hi"}]}}
    )
    assert r.status_code == 200 and r.json()["variant_name"] == "rescue"
    await observability.flush()
    failures = await observability.query(
        "SELECT model_name, model_provider_name FROM ModelProviderFailure WHERE inference_id = {i:UUID}",
        {"i": uuid.UUID(r.json()["inference_id"])},
    )
    assert {(f["model_name"], f["model_provider_name"]) for f in failures} == {
        ("broken", "first"),
        ("broken", "second"),
        ("dummy::error_three", "dummy"),
    }
    html = await ok(await gateway.get("/ui/observability/models"))
    assert "Error rate" in html and "100.0%" in html


async def test_models_page_shows_provider_health(gateway):
    for _ in range(3):
        response = await gateway.post(
            "/inference", json={"model_name": "balanced", "input": {"messages": [{"role": "user", "content": "Hi"}]}}
        )
        assert response.status_code == 200, response.text
    html = await ok(await gateway.get("/ui/observability/models"))
    section = html[html.index("Provider health") :]
    assert "balanced" in section and "weighted" in section and "closed" in section


@pytest.mark.parametrize(
    "path",
    [
        "/ui/observability/inferences/0196c682-72e0-7c83-a92b-9d1a3c7630f2",
        "/ui/observability/inferences/not-a-uuid",
        "/ui/observability/episodes/0196c682-72e0-7c83-a92b-9d1a3c7630f2",
        "/ui/observability/functions/nope",
        "/ui/observability/functions/basic_test/variants/nope",
        "/ui/datasets/nope_nothing_here",
        "/ui/datasets/x/datapoint/0196c682-72e0-7c83-a92b-9d1a3c7630f2",
        "/ui/resolve?id=0196c682-72e0-7c83-a92b-9d1a3c7630f2",
        "/ui/object_storage?path=../../etc/passwd",
        "/ui/no/such/page",
    ],
)
async def test_unknown_things_get_a_not_found_page(gateway, path):
    r = await gateway.get(path)
    assert r.status_code == 404, r.text[-500:]
    assert "Not found" in r.text and 'href="/ui/"' in r.text and "Traceback" not in r.text


async def test_the_search_box_goes_to_what_an_id_names(gateway, seeded):
    inference = seeded["chat"][2]
    r = await gateway.get("/ui/resolve", params={"id": inference["inference_id"]})
    assert r.status_code == 303 and r.headers["location"].endswith(inference["inference_id"])
    r = await gateway.get("/ui/resolve", params={"id": inference["episode_id"]})
    assert r.status_code == 303 and "/observability/episodes/" in r.headers["location"]


async def test_config_page_shows_no_secrets(gateway, config_dir, openai_mock):
    html = await ok(await gateway.get("/ui/config"))
    assert "basic_test" in html and "thumbs_up" in html
    assert openai_mock.api_key not in html
