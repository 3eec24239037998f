"""A bounded property-based fuzz of every JSON route and UI form: whatever a caller sends, the
answer is never a 500 unless a provider failed, and the gateway is healthy afterwards.

Bodies start from a valid request per route and have any part replaced by arbitrary JSON, so
the fuzz reaches past the first check of each route."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PROVIDER_FAILURE = ("All model providers failed", "All variants failed")
INFERENCE_ID = "0196c682-72e0-7c83-a92b-9d1a3c7630f2"
HELLO = {"system": {"assistant_name": "Alfred"}, "messages": [{"role": "user", "content": "Hello"}]}

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


DELETE = object()


def paths(value, prefix: tuple = ()):
    """Every place in a JSON value: the value itself, each key's value, each list item."""
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield from paths(child, (*prefix, key))


def replaced(seed, path: tuple, new):
    if not path:
        return new
    copy = orjson.loads(orjson.dumps(seed))
    parent = copy
    for key in path[:-1]:
        parent = parent[key]
    if new is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return copy


def mutated(seed):
    """The seed with one place replaced by arbitrary JSON (or removed): everything else stays
    valid, so each example reaches the check of the place it broke."""
    one_change = st.tuples(st.sampled_from(list(paths(seed))[1:]), st.one_of(JSON, st.just(DELETE)))
    return st.one_of(one_change.map(lambda change: replaced(seed, *change)), JSON)


JSON_ROUTES = {
    "/inference": {"function_name": "basic_test", "input": HELLO, "tags": {"k": "v"}, "params": {}},
    "/feedback": {"metric_name": "thumbs_up", "value": True, "inference_id": INFERENCE_ID, "tags": {}},
    "/openai/v1/chat/completions": {
        "model": "tensorzero::function_name::basic_test",
        "messages": [
            {"role": "system", "content": [{"type": "text", "tensorzero::arguments": {"assistant_name": "A"}}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                ],
            },
        ],
    },
    "/openai/v1/embeddings": {"model": "tensorzero::embedding_model_name::embedder", "input": "hi"},
    "/v1/inferences/list_inferences": {
        "function_name": "basic_test",
        "filters": {"type": "boolean_metric", "metric_name": "thumbs_up", "value": True},
        "limit": 5,
        "order_by": [{"by": "timestamp", "direction": "descending"}],
    },
    "/v1/inferences/get_inferences": {"ids": [INFERENCE_ID]},
    "/internal/inferences/count": {"function_name": "basic_test"},
    "/v1/datasets/fuzzed/datapoints": {
        "datapoints": [
            {"type": "chat", "function_name": "basic_test", "input": HELLO, "output": [{"type": "text", "text": "x"}]}
        ]
    },
    "/v1/datasets/fuzzed/list_datapoints": {"limit": 5, "offset": 0},
    "/v1/datasets/get_datapoints": {"ids": [INFERENCE_ID]},
    "/v1/datasets/fuzzed/from_inferences": {"inference_ids": [INFERENCE_ID]},
    "/v1/curation/examples": {"function_name": "basic_test", "format": "openai_sft", "limit": 5},
    "/v1/replay": {"inference_ids": [INFERENCE_ID], "variant_name": "echo"},
}

UI_FORMS = {
    f"/ui/observability/inferences/{INFERENCE_ID}/feedback": {"metric_name": "thumbs_up", "value": "true"},
    "/ui/datasets/builder": {"dataset_name": "fuzzed_ui", "function": "basic_test", "metric": "thumbs_up"},
    f"/ui/observability/episodes/{INFERENCE_ID}/feedback": {"metric_name": "quality", "value": "0.5"},
    "/ui/api-keys": {"description": "fuzzed", "expires_at": "2999-01-01T00:00:00Z"},
}

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.fixture(scope="module")
async def loop():
    return asyncio.get_running_loop()


def allowed(response) -> bool:
    if response.status_code < 500 or response.status_code in (501, 502, 503):
        return True
    text = response.text
    return any(fragment in text for fragment in PROVIDER_FAILURE)


@pytest.mark.parametrize("path", sorted(JSON_ROUTES))
def test_json_routes_never_answer_500_for_caller_input(path, gateway, loop):
    statuses: list[int] = []

    @FUZZ
    @given(body=mutated(JSON_ROUTES[path]))
    def check(body):
        response = loop.run_until_complete(
            gateway.post(path, content=orjson.dumps(body), headers={"content-type": "application/json"})
        )
        statuses.append(response.status_code)
        assert allowed(response), (path, body, response.status_code, response.text[:500])

    check()
    assert len(statuses) >= 10 and any(400 <= s < 500 for s in statuses)
    assert loop.run_until_complete(gateway.get("/status")).status_code == 200


TEXT = st.text(max_size=40)


@pytest.mark.parametrize("path", sorted(UI_FORMS))
def test_ui_forms_never_answer_500(path, ui_post, loop):
    fields = {key: st.one_of(st.just(value), TEXT) for key, value in UI_FORMS[path].items()}

    @settings(FUZZ, max_examples=50)
    @given(form=st.fixed_dictionaries({}, optional={**fields, "extra": TEXT}))
    def check(form):
        response = loop.run_until_complete(ui_post(path, form))
        assert response.status_code < 500, (path, form, response.status_code, response.text[-500:])

    check()


@settings(FUZZ, max_examples=50)
@given(segment=st.text(min_size=1, max_size=30), query=st.text(max_size=30))
def test_ui_pages_never_answer_500_for_any_path(segment, query, gateway, loop):
    from urllib.parse import quote

    for template in ("/ui/observability/functions/{}", "/ui/datasets/{}", "/ui/observability/inferences/{}"):
        path = template.format(quote(segment, safe=""))
        response = loop.run_until_complete(gateway.get(path, params={"metric": query, "limit": query}))
        assert response.status_code < 500, (path, response.status_code, response.text[-300:])


def test_health_after_the_fuzz(gateway, loop):
    assert loop.run_until_complete(gateway.get("/health")).status_code == 200
