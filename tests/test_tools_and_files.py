"""Tool use across turns and multimodal input: what providers receive, what is stored, and
every bad tool call, tool result or file rejected with a 4xx that names it."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import orjson
import pytest

from tests.mocks.openai_server import PNG

PNG_B64 = base64.b64encode(PNG).decode()
WEATHER = {"location": "Oslo"}


def image_input(block: dict) -> dict:
    return {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, block]}]}


async def test_base64_image_reaches_openai_and_is_kept_by_content_hash(gateway, openai_mock, observability, config_dir):
    block = {"type": "file", "file_type": "base64", "data": PNG_B64, "mime_type": "image/png", "detail": "low"}
    r = await gateway.post("/inference", json={"function_name": "openai_chat", "input": image_input(block)})
    assert r.status_code == 200, r.text
    parts = openai_mock.last()["body"]["messages"][0]["content"]
    assert parts[1] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}", "detail": "low"}}
    await observability.flush()
    rows = await observability.query(
        "SELECT input FROM ChatInference WHERE id = {id:UUID}", {"id": uuid.UUID(r.json()["inference_id"])}
    )
    pointer = orjson.loads(rows[0]["input"])["messages"][0]["content"][1]
    assert pointer["file_type"] == "object_storage_pointer" and "data" not in pointer
    assert pointer["storage_path"]["kind"] == {"type": "filesystem", "path": str(config_dir / "object_storage")}
    assert (Path(pointer["storage_path"]["kind"]["path"]) / pointer["storage_path"]["path"]).read_bytes() == PNG


async def test_url_image_is_fetched_and_typed_from_its_bytes(gateway, openai_mock):
    block = {"type": "image", "url": f"{openai_mock.url}/files/pixel.png"}
    r = await gateway.post("/inference", json={"function_name": "openai_chat", "input": image_input(block)})
    assert r.status_code == 200, r.text
    part = openai_mock.last()["body"]["messages"][0]["content"][1]
    assert part["image_url"]["url"] == f"data:image/png;base64,{PNG_B64}"


async def test_image_reaches_anthropic_as_an_image_block(gateway, anthropic_mock):
    block = {"type": "file", "file_type": "base64", "data": PNG_B64, "mime_type": "image/png"}
    r = await gateway.post("/inference", json={"function_name": "anthropic_chat", "input": image_input(block)})
    assert r.status_code == 200, r.text
    assert anthropic_mock.last()["body"]["messages"][0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
    }


async def test_pdf_goes_to_openai_as_a_file_part(gateway, openai_mock):
    pdf = base64.b64encode(b"%PDF-1.4 minimal").decode()
    block = {"type": "file", "file_type": "base64", "data": pdf, "mime_type": "application/pdf", "filename": "a.pdf"}
    r = await gateway.post("/inference", json={"function_name": "openai_chat", "input": image_input(block)})
    assert r.status_code == 200, r.text
    assert openai_mock.last()["body"]["messages"][0]["content"][1] == {
        "type": "file",
        "file": {"file_data": f"data:application/pdf;base64,{pdf}", "filename": "a.pdf"},
    }


async def test_tool_round_trip_and_allowed_and_additional_tools(gateway):
    first = (
        await gateway.post(
            "/inference",
            json={
                "function_name": "weather_helper",
                "input": {"messages": [{"role": "user", "content": "Weather in Brooklyn?"}]},
            },
        )
    ).json()
    call = first["content"][0]
    history = {
        "messages": [
            {"role": "user", "content": "Weather in Brooklyn?"},
            {"role": "assistant", "content": [call]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "id": call["id"], "name": call["name"], "result": "22"}],
            },
        ]
    }
    r = await gateway.post(
        "/inference", json={"function_name": "weather_helper", "episode_id": first["episode_id"], "input": history}
    )
    assert r.status_code == 200, r.text
    extra = {"name": "get_humidity", "description": "Humidity", "parameters": {"type": "object"}}
    r = await gateway.post(
        "/inference",
        json={
            "function_name": "weather_helper",
            "input": history,
            "additional_tools": [extra],
            "allowed_tools": ["get_temperature"],
            "tool_choice": "required",
            "parallel_tool_calls": False,
        },
    )
    assert r.status_code == 200, r.text


CALL = {"type": "tool_call", "id": "c1", "name": "get_temperature", "arguments": orjson.dumps(WEATHER).decode()}
BAD = [
    pytest.param(
        [{"role": "assistant", "content": [{**CALL, "name": "launch_rockets"}]}],
        400,
        "content[0]: tool call names unknown tool `launch_rockets`",
        id="unknown-tool-in-history",
    ),
    pytest.param(
        [{"role": "assistant", "content": [{**CALL, "arguments": '{"location": 7}'}]}],
        400,
        "arguments of tool call `get_temperature` do not match its parameters",
        id="args-fail-schema",
    ),
    pytest.param(
        [{"role": "assistant", "content": [{**CALL, "arguments": "not json"}]}],
        400,
        "do not match its parameters",
        id="args-not-json",
    ),
    pytest.param(
        [{"role": "user", "content": [{"type": "tool_result", "id": "zz", "name": "get_temperature", "result": "1"}]}],
        400,
        "tool result `zz` answers no earlier tool call",
        id="result-for-unknown-call",
    ),
]


@pytest.mark.parametrize("messages, status, fragment", BAD)
async def test_bad_tool_history(gateway, messages, status, fragment):
    r = await gateway.post(
        "/inference",
        json={
            "function_name": "weather_helper",
            "input": {"messages": [{"role": "user", "content": "Weather?"}, *messages]},
        },
    )
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]


async def test_additional_tool_with_invalid_schema(gateway):
    r = await gateway.post(
        "/inference",
        json={
            "function_name": "weather_helper",
            "input": {"messages": [{"role": "user", "content": "x"}]},
            "additional_tools": [{"name": "t", "description": "", "parameters": {"type": 5}}],
        },
    )
    assert r.status_code == 400 and "Tool `t` has invalid parameters" in r.json()["error"]


FILE_BAD = [
    pytest.param(
        {"type": "file", "file_type": "base64", "data": base64.b64encode(b"hello").decode(), "mime_type": "image/png"},
        400,
        "content[1]: the data is not a valid image/png image",
        id="not-an-image",
    ),
    pytest.param(
        {"type": "file", "file_type": "base64", "data": "@@not base64@@", "mime_type": "image/png"},
        400,
        "`data` is not valid base64",
        id="bad-base64",
    ),
    pytest.param(
        {"type": "file", "file_type": "base64", "data": base64.b64encode(b"hello").decode()},
        400,
        "needs `mime_type`",
        id="no-mime",
    ),
    pytest.param(
        {"type": "image", "url": "http://127.0.0.1:9/x.png"},
        400,
        "could not fetch the file at its URL",
        id="loopback-url",
    ),
    pytest.param(
        {"type": "image", "url": "ftp://example/x.png"}, 400, "file URLs must be http:// or https://", id="ftp-url"
    ),
    pytest.param(
        {"type": "image", "url": "javascript:alert(1)"},
        400,
        "file URLs must be http:// or https://",
        id="javascript-url",
    ),
]


@pytest.mark.parametrize("block, status, fragment", FILE_BAD)
async def test_bad_files(gateway, block, status, fragment):
    r = await gateway.post("/inference", json={"function_name": "openai_chat", "input": image_input(block)})
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]


async def test_url_whose_bytes_are_not_an_image(gateway, openai_mock):
    block = {"type": "image", "url": f"{openai_mock.url}/files/fake.png"}
    r = await gateway.post("/inference", json={"function_name": "openai_chat", "input": image_input(block)})
    assert r.status_code == 400 and "is not a valid image/png image" in r.json()["error"]


async def test_oversized_file(gateway):
    data = base64.b64encode(PNG + b"\x00" * (21 * 1024 * 1024)).decode()
    block = {"type": "file", "file_type": "base64", "data": data, "mime_type": "image/png"}
    r = await gateway.post("/inference", json={"function_name": "openai_chat", "input": image_input(block)})
    assert r.status_code == 413 and "larger than 20 MiB" in r.json()["error"]
