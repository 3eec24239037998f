"""TensorZero configs and requests that work unchanged: small configs loaded as a user writes
them, served by an in-process gateway, checked against TensorZero's documented behaviour."""

from __future__ import annotations

import textwrap
from pathlib import Path

import httpx
import orjson
import pytest

from tensorzero_ray.api.gateway import create_app
from tensorzero_ray.config import load_config
from tensorzero_ray.functions.routers import LocalRouters

MODEL = """
[models.m]
routing = ["p"]
[models.m.providers.p]
type = "dummy"
model_name = "echo_request_messages"
"""


class Gateway:
    """An in-process gateway over a config written to a temporary folder."""

    def __init__(self, folder: Path, files: dict[str, str]):
        for name, text in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(textwrap.dedent(text))
        self.config = load_config(str(folder / "tensorzero.toml"))
        self.routers = LocalRouters(self.config, None)
        transport = httpx.ASGITransport(app=create_app(self.config, self.routers))
        self.client = httpx.AsyncClient(transport=transport, base_url="http://localhost")

    async def close(self) -> None:
        await self.client.aclose()
        await self.routers.aclose()


@pytest.fixture
async def gateway_for(tmp_path):
    made: list[Gateway] = []

    def build(files: dict[str, str]) -> Gateway:
        made.append(Gateway(tmp_path, files))
        return made[-1]

    yield build
    for gateway in made:
        await gateway.close()


def text_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["content"][0]["text"]


async def test_base_path_alone_lets_templates_include_files(gateway_for):
    gateway = gateway_for(
        {
            "tensorzero.toml": MODEL
            + """
            [gateway.template_filesystem_access]
            base_path = "shared"

            [functions.f]
            type = "chat"
            system_schema = "system_schema.json"
            [functions.f.variants.v]
            type = "chat_completion"
            model = "m"
            system_template = "system.minijinja"
            """,
            "system_schema.json": '{"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}',
            "system.minijinja": '{% include "greeting.minijinja" %} {{ name }}.',
            "shared/greeting.minijinja": "Hello from a shared file,",
        }
    )
    r = await gateway.client.post(
        "/inference",
        json={
            "function_name": "f",
            "input": {"system": {"name": "Ada"}, "messages": [{"role": "user", "content": "Hi"}]},
        },
    )
    assert "Hello from a shared file, Ada." in r.text


async def test_a_system_template_renders_without_a_system_input(gateway_for):
    gateway = gateway_for(
        {
            "tensorzero.toml": MODEL
            + """
            [functions.f]
            type = "chat"
            [functions.f.variants.v]
            type = "chat_completion"
            model = "m"
            system_template = "system.minijinja"
            """,
            "system.minijinja": "You are terse.",
        }
    )
    r = await gateway.client.post(
        "/inference", json={"function_name": "f", "input": {"messages": [{"role": "user", "content": "Hi"}]}}
    )
    assert "You are terse." in text_of(r)


async def test_unstable_error_json_adds_the_structured_error(gateway_for):
    gateway = gateway_for({"tensorzero.toml": MODEL + "[gateway]\nunstable_error_json = true\n"})
    native = await gateway.client.post(
        "/inference", json={"function_name": "nope", "input": {"messages": [{"role": "user", "content": "Hi"}]}}
    )
    assert native.status_code == 404
    assert native.json() == {"error": "Unknown function: nope", "error_json": {"UnknownFunction": {"name": "nope"}}}
    openai = await gateway.client.post(
        "/openai/v1/chat/completions",
        json={"model": "tensorzero::function_name::nope", "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert openai.json()["error"]["tensorzero_error_json"] == {"UnknownFunction": {"name": "nope"}}
    failed = await gateway.client.post(
        "/inference",
        json={"model_name": "dummy::error", "input": {"messages": [{"role": "user", "content": "Hi"}]}},
    )
    details = failed.json()["error_json"]
    assert set(details) == {"AllModelProvidersFailed"}
    assert "InferenceClient" in details["AllModelProvidersFailed"]["provider_errors"]["dummy"]


async def test_without_unstable_error_json_errors_stay_plain(gateway_for):
    gateway = gateway_for({"tensorzero.toml": MODEL})
    r = await gateway.client.post(
        "/inference", json={"function_name": "nope", "input": {"messages": [{"role": "user", "content": "Hi"}]}}
    )
    assert r.json() == {"error": "Unknown function: nope"}


async def test_configs_tensorzero_loads_load_here_too(gateway_for, openai_mock):
    """Azure embedding models by endpoint and deployment, a function whose tool_choice names a
    tool it does not list, and DICL with k = 0."""
    gateway = gateway_for(
        {
            "tensorzero.toml": MODEL
            + f"""
            [embedding_models.azure_embedder]
            routing = ["azure"]
            [embedding_models.azure_embedder.providers.azure]
            type = "azure"
            deployment_id = "embedding-deployment"
            endpoint = "{openai_mock.url}"
            api_key_location = "dynamic::azure_key"

            [tools.lookup]
            description = "Look something up"
            parameters = "lookup.json"

            [functions.f]
            type = "chat"
            tool_choice = {{ specific = "lookup" }}
            [functions.f.variants.v]
            type = "chat_completion"
            model = "m"
            [functions.f.variants.neighbours]
            type = "experimental_dynamic_in_context_learning"
            embedding_model = "azure_embedder"
            model = "m"
            k = 2
            """,
            "lookup.json": '{"type": "object", "properties": {"q": {"type": "string"}}}',
        }
    )
    r = await gateway.client.post(
        "/openai/v1/embeddings",
        json={
            "model": "tensorzero::embedding_model_name::azure_embedder",
            "input": ["four", "three"],
            "tensorzero::credentials": {"azure_key": openai_mock.api_key},
        },
    )
    assert r.status_code == 200, r.text
    assert [d["embedding"][0] for d in r.json()["data"]] == [4.0, 5.0]
    sent = openai_mock.last()
    assert sent["path"] == "/openai/deployments/embedding-deployment/embeddings" and "model" not in sent["body"]
    assert sent["headers"]["api-key"] == openai_mock.api_key


ROLE_TEMPLATES = {
    "tensorzero.toml": MODEL
    + """
    [functions.f]
    type = "chat"
    system_schema = "name.json"
    user_schema = "name.json"
    assistant_schema = "name.json"
    [functions.f.variants.v]
    type = "chat_completion"
    model = "m"
    system_template = "system.minijinja"
    user_template = "user.minijinja"
    assistant_template = "assistant.minijinja"
    """,
    "name.json": '{"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}',
    "system.minijinja": "System for {{ name }}.",
    "user.minijinja": "User {{ name }} asks.",
    "assistant.minijinja": "Assistant {{ name }} answers.",
}


def arguments(name: str) -> list[dict]:
    return [{"type": "text", "tensorzero::arguments": {"name": name}}]


async def test_openai_text_blocks_carry_template_arguments_in_every_role(gateway_for):
    gateway = gateway_for(ROLE_TEMPLATES)
    r = await gateway.client.post(
        "/openai/v1/chat/completions",
        json={
            "model": "tensorzero::function_name::f",
            "messages": [
                {"role": "system", "content": arguments("Sys")},
                {"role": "user", "content": arguments("Ann")},
                {"role": "assistant", "content": arguments("Bot")},
                {"role": "user", "content": arguments("Ben")},
            ],
        },
    )
    assert r.status_code == 200, r.text
    echoed = r.json()["choices"][0]["message"]["content"]
    for rendered in ("System for Sys.", "User Ann asks.", "Assistant Bot answers.", "User Ben asks."):
        assert rendered in echoed


@pytest.mark.parametrize(
    "block, fragment",
    [
        (
            {"type": "text", "text": "Hi", "tensorzero::arguments": {"name": "Ann"}},
            "Only one of `text` or `tensorzero::arguments` can be set",
        ),
        ({"type": "text"}, "Either `text` or `tensorzero::arguments` must be set"),
    ],
    ids=["both", "neither"],
)
@pytest.mark.parametrize("role", ["system", "user"])
async def test_openai_text_blocks_take_text_or_arguments(gateway_for, role, block, fragment):
    gateway = gateway_for(ROLE_TEMPLATES)
    r = await gateway.client.post(
        "/openai/v1/chat/completions",
        json={"model": "tensorzero::function_name::f", "messages": [{"role": role, "content": [block]}]},
    )
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith(f"Invalid request to OpenAI-compatible endpoint: {fragment}")


async def test_openai_endpoint_errors_use_tensorzeros_words(gateway_for):
    gateway = gateway_for(ROLE_TEMPLATES)
    wrong_type = await gateway.client.post(
        "/openai/v1/chat/completions",
        content=b'{"model": "tensorzero::function_name::f", "messages": []}',
        headers={"content-type": "text/plain"},
    )
    assert wrong_type.status_code == 400
    assert "Content-Type must be `application/json`" in wrong_type.json()["error"]["message"]
    image_in_system = await gateway.client.post(
        "/openai/v1/chat/completions",
        json={
            "model": "tensorzero::function_name::f",
            "messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}],
        },
    )
    assert "System message must contain only text or template content blocks" in image_in_system.text
    plain_model = await gateway.client.post(
        "/openai/v1/chat/completions", json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}
    )
    assert plain_model.json()["error"]["message"].startswith(
        "Invalid request to OpenAI-compatible endpoint: `model` field must start with "
        "`tensorzero::function_name::` or `tensorzero::model_name::`. For example,"
    )


PDF = "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PD4+CmVuZG9iagp0cmFpbGVyCjw8Pj4KJSVFT0YK"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def file_input(*files: tuple[str, str]) -> dict:
    blocks = [{"type": "text", "text": "Read these"}]
    blocks += [{"type": "file", "data": data, "mime_type": mime} for data, mime in files]
    return {"messages": [{"role": "user", "content": blocks}]}


async def test_dummy_extract_images_and_require_pdf(gateway_for):
    gateway = gateway_for({"tensorzero.toml": MODEL})
    images = await gateway.client.post(
        "/inference", json={"model_name": "dummy::extract_images", "input": file_input((PNG, "image/png"))}
    )
    assert [(f["mime_type"], f["data"]) for f in orjson.loads(text_of(images))] == [("image/png", PNG)]
    with_pdf = await gateway.client.post(
        "/inference",
        json={"model_name": "dummy::require_pdf", "input": file_input((PNG, "image/png"), (PDF, "application/pdf"))},
    )
    assert [f["mime_type"] for f in orjson.loads(text_of(with_pdf))] == ["image/png", "application/pdf"]
    without = await gateway.client.post(
        "/inference", json={"model_name": "dummy::require_pdf", "input": file_input((PNG, "image/png"))}
    )
    assert without.status_code >= 400 and "PDF must be provided for require_pdf model" in without.json()["error"]


async def test_dummy_echo_extra_info_separates_config_from_request(gateway_for):
    gateway = gateway_for(
        {
            "tensorzero.toml": """
            [models.echo]
            routing = ["d"]
            [models.echo.providers.d]
            type = "dummy"
            model_name = "echo_extra_info"
            extra_body = [{ pointer = "/from_provider", value = 1 }]

            [functions.f]
            type = "chat"
            [functions.f.variants.v]
            type = "chat_completion"
            model = "echo"
            extra_headers = [{ name = "x-from-variant", value = "v" }]
            """
        }
    )
    r = await gateway.client.post(
        "/inference",
        json={
            "function_name": "f",
            "input": {"messages": [{"role": "user", "content": "Hi"}]},
            "extra_body": [{"pointer": "/from_request", "value": 2}],
            "extra_headers": [{"variant_name": "v", "name": "x-from-request", "value": "r"}],
        },
    )
    assert orjson.loads(text_of(r)) == {
        "extra_body": {
            "extra_body": [{"pointer": "/from_provider", "value": 1}],
            "inference_extra_body": [{"pointer": "/from_request", "value": 2}],
        },
        "extra_headers": {
            "extra_headers": [{"name": "x-from-variant", "value": "v"}],
            "inference_extra_headers": [{"variant_name": "v", "name": "x-from-request", "value": "r"}],
        },
    }


async def test_dummy_original_response_is_its_raw_text(gateway_for):
    gateway = gateway_for({"tensorzero.toml": MODEL})
    hello = {"messages": [{"role": "user", "content": "Hi"}]}
    stream = await gateway.client.post(
        "/inference",
        json={"model_name": "dummy::good", "input": hello, "stream": True, "include_original_response": True},
    )
    events = [orjson.loads(e.removeprefix("data: ")) for e in stream.text.strip().split("\n\n")[:-1]]
    texts = [e for e in events if e.get("content")]
    assert [e["original_chunk"] for e in texts] == [e["content"][0]["text"] for e in texts]
    assert "".join(e["original_chunk"] for e in texts).startswith("Wally, the golden retriever")
    whole = await gateway.client.post(
        "/inference", json={"model_name": "dummy::good", "input": hello, "include_original_response": True}
    )
    assert orjson.loads(whole.json()["original_response"])["usage"]["total_tokens"] == 20
