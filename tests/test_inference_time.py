"""Inference-time optimization variants against the mock providers: best-of-n picks the
candidate its evaluator names (also after a candidate fails, with indices remapped), falls
back to chance when the evaluator fails or names nothing valid, and streams its choice whole;
mixture-of-n fuses, also when streaming; every model inference is stored under the one inference."""

from __future__ import annotations

import textwrap

import httpx
import orjson
import pytest

from tensorzero_ray.api.gateway import create_app
from tensorzero_ray.config import ConfigError, load_config
from tensorzero_ray.functions.routers import LocalRouters
from tensorzero_ray.providers.dummy import ALTERNATE, MEGUMIN
from tests.mocks.openai_server import TEXT

MODELS = "".join(
    f"""
[models.{name}]
routing = ["openai"]
[models.{name}.providers.openai]
type = "openai"
model_name = "{model}"
api_base = "{{openai}}/v1/"
api_key_location = "path::{{key}}"
"""
    for name, model in (
        ("chooser", "choose-1"),
        ("confused", "choose-9"),
        ("fuser", "fuse"),
        ("broken", "gone-500"),
        ("thinker", "think"),
    )  # fmt: skip
)
CONFIG = """
[functions.story]
type = "chat"
[functions.story.variants.good]
type = "chat_completion"
model = "dummy::good"
[functions.story.variants.alternate]
type = "chat_completion"
model = "dummy::alternate"
[functions.story.variants.broken]
type = "chat_completion"
model = "broken"

[functions.story.variants.bon]
type = "experimental_best_of_n_sampling"
candidates = ["good", "alternate"]
[functions.story.variants.bon.evaluator]
model = "chooser"

[functions.story.variants.bon_survivors]
type = "experimental_best_of_n_sampling"
candidates = ["broken", "good", "alternate"]
[functions.story.variants.bon_survivors.evaluator]
model = "chooser"

[functions.story.variants.bon_confused]
type = "experimental_best_of_n_sampling"
candidates = ["good", "alternate"]
[functions.story.variants.bon_confused.evaluator]
model = "confused"

[functions.story.variants.bon_no_evaluator]
type = "experimental_best_of_n_sampling"
candidates = ["good", "alternate"]
[functions.story.variants.bon_no_evaluator.evaluator]
model = "broken"

[functions.story.variants.bon_all_fail]
type = "experimental_best_of_n_sampling"
candidates = ["broken", "broken"]
[functions.story.variants.bon_all_fail.evaluator]
model = "chooser"

[functions.story.variants.mix]
type = "experimental_mixture_of_n"
candidates = ["good", "alternate"]
[functions.story.variants.mix.fuser]
model = "fuser"

[functions.answer]
type = "json"
output_schema = "answer_schema.json"
[functions.answer.variants.cot]
type = "experimental_chain_of_thought"
model = "thinker"
"""


@pytest.fixture(scope="module")
async def client(tmp_path_factory, openai_mock, observability):
    folder = tmp_path_factory.mktemp("inference_time")
    (folder / "key").write_text(openai_mock.api_key)
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    (folder / "answer_schema.json").write_text(orjson.dumps(schema).decode())
    text = textwrap.dedent(CONFIG + MODELS).replace("{openai}", openai_mock.url).replace("{key}", str(folder / "key"))
    (folder / "tensorzero.toml").write_text(text)
    config = load_config(str(folder / "tensorzero.toml"))
    routers = LocalRouters(config, observability)
    transport = httpx.ASGITransport(app=create_app(config, routers, observability))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=60) as http:
        yield http
    await routers.aclose()


async def infer(client, variant: str, **extra) -> httpx.Response:
    body = {
        "function_name": "story", "variant_name": variant,
        "input": {"system": "Tell short stories.", "messages": [{"role": "user", "content": "A story, please"}]},
        **extra,
    }  # fmt: skip
    return await client.post("/inference", json=body)


async def stored_models(observability, inference_id: str) -> list[str]:
    await observability.flush()
    rows = await observability.query(
        "SELECT model_name FROM ModelInference WHERE inference_id = {i:UUID} ORDER BY model_name", {"i": inference_id}
    )
    return [r["model_name"] for r in rows]


async def test_best_of_n_returns_the_candidate_the_evaluator_names(client, openai_mock, observability):
    answer = await infer(client, "bon")
    assert answer.status_code == 200, answer.text
    assert answer.json()["content"] == [{"type": "text", "text": ALTERNATE}]  # candidate 1
    sent = [r["body"] for r in openai_mock.requests if r["body"].get("model") == "choose-1"][-1]
    system, *conversation = sent["messages"]
    assert "judge candidate answers" in system["content"] and "Tell short stories." in system["content"]
    listing = (
        conversation[-1]["content"][0]["text"]
        if isinstance(conversation[-1]["content"], list)
        else conversation[-1]["content"]
    )
    assert f"## Candidate 0\n\n{MEGUMIN}" in listing and f"## Candidate 1\n\n{ALTERNATE}" in listing
    assert sent["response_format"]["type"] == "json_schema"
    assert await stored_models(observability, answer.json()["inference_id"]) == [
        "chooser", "dummy::alternate", "dummy::good",
    ]  # fmt: skip


async def test_best_of_n_skips_a_failed_candidate_and_renumbers_the_rest(client):
    answer = await infer(client, "bon_survivors")
    assert answer.status_code == 200 and answer.json()["content"][0]["text"] == ALTERNATE


@pytest.mark.parametrize("variant", ["bon_confused", "bon_no_evaluator"])
async def test_best_of_n_falls_back_to_a_random_survivor(client, variant):
    answers = {(await infer(client, variant)).json()["content"][0]["text"] for _ in range(12)}
    assert answers <= {MEGUMIN, ALTERNATE} and answers


async def test_best_of_n_with_no_surviving_candidate_fails_the_variant(client):
    answer = await infer(client, "bon_all_fail")
    assert answer.status_code == 502 and "All candidates failed" in answer.json()["error"]


async def test_mixture_of_n_fuses_the_candidates(client, openai_mock, observability):
    answer = await infer(client, "mix")
    assert answer.status_code == 200 and answer.json()["content"] == [{"type": "text", "text": TEXT}]
    sent = [r["body"] for r in openai_mock.requests if r["body"].get("model") == "fuse"][-1]
    assert "combine several candidate answers" in sent["messages"][0]["content"]
    assert MEGUMIN in str(sent["messages"][-1]) and ALTERNATE in str(sent["messages"][-1])
    assert await stored_models(observability, answer.json()["inference_id"]) == [
        "dummy::alternate",
        "dummy::good",
        "fuser",
    ]


async def test_mixture_of_n_streams_the_fuser(client, observability):
    response = await infer(client, "mix", stream=True)
    assert response.status_code == 200
    events = [orjson.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    text = "".join(block["text"] for e in events for block in e.get("content", []) if block.get("type") == "text")
    assert text == TEXT
    assert await stored_models(observability, events[0]["inference_id"]) == ["dummy::alternate", "dummy::good", "fuser"]


async def test_best_of_n_streams_the_chosen_answer_whole(client, observability):
    response = await infer(client, "bon", stream=True)
    assert response.status_code == 200, response.text
    events = [orjson.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    assert [block["text"] for block in events[0]["content"]] == [ALTERNATE]  # candidate 1, in one chunk
    assert events[-1]["usage"] == {"input_tokens": 10, "output_tokens": 1}  # the chosen call's usage
    stored = await stored_models(observability, events[0]["inference_id"])
    assert stored == ["chooser", "dummy::alternate", "dummy::good"]
    [row] = await observability.query(
        "SELECT output, ttft_ms FROM ChatInference WHERE id = {i:UUID}", {"i": events[0]["inference_id"]}
    )
    assert orjson.loads(row["output"]) == [{"type": "text", "text": ALTERNATE}]
    assert row["ttft_ms"] is not None  # until the evaluator chose: the first chunk leaves then


async def test_chain_of_thought_answers_the_response_and_keeps_the_thinking(client, openai_mock, observability):
    body = {"function_name": "answer", "input": {"messages": [{"role": "user", "content": "What is six times seven?"}]}}
    answer = await client.post("/inference", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["output"] == {"raw": '{"answer":"42"}', "parsed": {"answer": "42"}}
    sent = [r["body"] for r in openai_mock.requests if r["body"].get("model") == "think"][-1]
    schema = sent["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["thinking", "response"] and schema["properties"]["response"]["required"] == ["answer"]
    await observability.flush()
    stored = await observability.query(
        "SELECT auxiliary_content FROM JsonInference WHERE id = {i:UUID}", {"i": answer.json()["inference_id"]}
    )
    assert "step by step" in stored[0]["auxiliary_content"]


def test_a_candidate_that_is_itself_best_of_n_is_refused_at_start_up(tmp_path):
    (tmp_path / "answer_schema.json").write_text('{"type": "object"}')
    (tmp_path / "tensorzero.toml").write_text(
        textwrap.dedent(CONFIG).replace('candidates = ["good", "alternate"]\n[functions.story.variants.mix.fuser]',
                                        'candidates = ["bon"]\n[functions.story.variants.mix.fuser]')
        + '[models.chooser]\nrouting = ["d"]\n[models.chooser.providers.d]\ntype = "dummy"\nmodel_name = "good"\n'
        + '[models.fuser]\nrouting = ["d"]\n[models.fuser.providers.d]\ntype = "dummy"\nmodel_name = "good"\n'
        + '[models.broken]\nrouting = ["d"]\n[models.broken.providers.d]\ntype = "dummy"\nmodel_name = "error"\n'
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"functions.story.variants.mix.candidates.0: candidate `bon` is itself"):
        load_config(str(tmp_path / "tensorzero.toml"))
