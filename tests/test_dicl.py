"""Dynamic in-context learning against the mock providers: the input is embedded by a mock
embedding model whose vectors are known, the nearest stored examples (within max_distance)
go into the provider request as user/assistant turns, nearest first, then the input itself;
an embedding model that fails fails the variant and the function falls back."""

from __future__ import annotations

import textwrap
import uuid

import httpx
import orjson
import pytest

from tensorzero_ray.api.gateway import create_app
from tensorzero_ray.config import ConfigError, load_config
from tensorzero_ray.functions.routers import LocalRouters
from tensorzero_ray.providers.dummy import MEGUMIN

CONFIG = """
[embedding_models.keywords]
routing = ["openai"]
[embedding_models.keywords.providers.openai]
type = "openai"
model_name = "keywords"
api_base = "{openai}/v1/"
api_key_location = "path::{key}"

[embedding_models.broken]
routing = ["openai"]
[embedding_models.broken.providers.openai]
type = "openai"
model_name = "keywords"
api_base = "http://127.0.0.1:9/v1/"
api_key_location = "none"

[models.gpt]
routing = ["openai"]
[models.gpt.providers.openai]
type = "openai"
model_name = "gpt-dicl"
api_base = "{openai}/v1/"
api_key_location = "path::{key}"

[functions.pets]
type = "chat"
[functions.pets.variants.dicl]
type = "experimental_dynamic_in_context_learning"
embedding_model = "keywords"
model = "gpt"
k = 3
max_distance = 0.1
[functions.pets.variants.blind]
type = "experimental_dynamic_in_context_learning"
embedding_model = "broken"
model = "gpt"
k = 3
[functions.pets.variants.plain]
type = "chat_completion"
model = "dummy::good"
[functions.pets.experimentation]
type = "static"
candidate_variants = ["blind"]
fallback_variants = ["plain"]
"""
# The mock embeds text by counting the words cat, dog and fish.
EXAMPLES = [
    ("cat", [1.0, 0.0, 0.0], "Cats purr."),
    ("dog", [0.0, 1.0, 0.0], "Dogs bark."),
    ("fish", [0.0, 0.0, 1.0], "Fish swim."),
    ("catlike", [0.9, 0.1, 0.0], "Lions are big cats."),
    ("mixed", [0.7, 0.7, 0.0], "Cats and dogs."),
]


@pytest.fixture(scope="module")
async def client(tmp_path_factory, openai_mock, observability):
    folder = tmp_path_factory.mktemp("dicl")
    (folder / "key").write_text(openai_mock.api_key)
    text = textwrap.dedent(CONFIG).replace("{openai}", openai_mock.url).replace("{key}", str(folder / "key"))
    (folder / "tensorzero.toml").write_text(text)
    config = load_config(str(folder / "tensorzero.toml"))
    await observability.insert(
        "DynamicInContextLearningExample",
        [
            {
                "id": str(uuid.uuid4()),
                "function_name": "pets",
                "variant_name": "dicl",
                "namespace": "",
                "input": orjson.dumps(
                    {"messages": [{"role": "user", "content": [{"type": "text", "text": name}]}]}
                ).decode(),
                "output": orjson.dumps([{"type": "text", "text": answer}]).decode(),
                "embedding": vector,
            }
            for name, vector, answer in EXAMPLES
        ],
    )
    routers = LocalRouters(config, observability)
    transport = httpx.ASGITransport(app=create_app(config, routers, observability))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=60) as http:
        yield http
    await routers.aclose()


async def test_the_nearest_examples_within_max_distance_go_into_the_prompt(client, openai_mock):
    body = {
        "function_name": "pets", "variant_name": "dicl",
        "input": {"messages": [{"role": "user", "content": "Tell me about a cat"}]},
    }  # fmt: skip
    answer = await client.post("/inference", json=body)
    assert answer.status_code == 200, answer.text
    sent = [r["body"] for r in openai_mock.requests if r["body"].get("model") == "gpt-dicl"][-1]
    system, *turns = sent["messages"]
    assert "examples" in system["content"]
    texts = [(t["role"], t["content"] if isinstance(t["content"], str) else t["content"][0]["text"]) for t in turns]
    # cat (distance 0) then catlike (0.006); mixed (0.29) is past max_distance, dog and fish are far.
    assert [role for role, _ in texts] == ["user", "assistant", "user", "assistant", "user"]
    assert '"text":"cat"' in texts[0][1] and texts[1][1] == "Cats purr."
    assert '"text":"catlike"' in texts[2][1] and texts[3][1] == "Lions are big cats."
    assert "Tell me about a cat" in texts[4][1]


async def test_a_failing_embedding_model_fails_the_variant_and_the_function_falls_back(client):
    body = {"function_name": "pets", "input": {"messages": [{"role": "user", "content": "A fish?"}]}}
    answer = await client.post("/inference", json=body)
    assert answer.status_code == 200 and answer.json()["variant_name"] == "plain"
    assert answer.json()["content"][0]["text"] == MEGUMIN


@pytest.mark.parametrize(
    "change, fragment",
    [
        (("k = 3\nmax_distance", "k = 0\nmax_distance"), "functions.pets.variants.dicl.k: `k` must be at least 1"),
        (('[functions.pets]\ntype = "chat"', '[functions.pets]\ntype = "chat"\ntools = ["t"]'),
         "functions.pets.variants.dicl.type: DICL variants do not serve functions with tools"),
    ],
)  # fmt: skip
def test_bad_dicl_settings_are_named_at_start_up(tmp_path, change, fragment):
    text = textwrap.dedent(CONFIG).replace(*change).replace("{openai}", "http://x").replace("{key}", "k")
    text += '[tools.t]\ndescription = "t"\nparameters = "t.json"\n'
    (tmp_path / "t.json").write_text('{"type": "object"}')
    (tmp_path / "tensorzero.toml").write_text(text)
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.").replace("`", ".")):
        load_config(str(tmp_path / "tensorzero.toml"))


async def test_examples_are_written_and_counted_through_the_gateway(client, observability):
    example = {
        "input": {"messages": [{"role": "user", "content": [{"type": "text", "text": "a dog"}]}]},
        "output": [{"type": "text", "text": "Dogs bark."}],
        "embedding": [0.0, 1.0, 0.0],
    }
    written = await client.post(
        "/internal/dicl/examples", json={"function_name": "pets", "variant_name": "fresh", "examples": [example] * 3}
    )
    assert written.status_code == 200 and written.json() == {"written": 3}
    await observability.flush()
    counted = await client.get("/internal/dicl/examples", params={"function_name": "pets", "variant_name": "fresh"})
    assert counted.json() == {"count": 3}
    uneven = {**example, "embedding": [1.0]}
    bad = await client.post(
        "/internal/dicl/examples",
        json={"function_name": "pets", "variant_name": "fresh", "examples": [example, uneven]},
    )
    assert bad.status_code == 400 and "same length" in bad.json()["error"]
    unknown = await client.post(
        "/internal/dicl/examples", json={"function_name": "nope", "variant_name": "v", "examples": []}
    )
    assert unknown.status_code == 404 and "Unknown function" in unknown.json()["error"]
