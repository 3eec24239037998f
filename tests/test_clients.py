"""Clients nobody here wrote (the `openai` SDK, TensorZero's own `tensorzero` package) and our
own (HTTP sync and async, in-cluster) against the real Serve HTTP endpoint on the quickstart."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from openai import OpenAI
from tensorzero import FileBase64, TensorZeroError, TensorZeroGateway, Text, Thought

from tensorzero_ray.client import AsyncTensorZeroRayClient, GatewayError, TensorZeroRayClient
from tensorzero_ray.ids import uuid7
from tensorzero_ray.types import ChatChunk, ChatInferenceResponse, JsonInferenceResponse

ROOT = Path(__file__).resolve().parent.parent
CHAT_INPUT = {"system": {"assistant_name": "Alfred"}, "messages": [{"role": "user", "content": "Hello"}]}
EXTRACT_INPUT = {
    "messages": [
        {
            "role": "user",
            "content": [{"type": "template", "name": "user", "arguments": {"text": "The answer is Hello"}}],
        }
    ]
}
WEATHER_INPUT = {"messages": [{"role": "user", "content": "Weather in Brooklyn?"}]}
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
SYSTEM_TEMPLATE = {
    "role": "system",
    "content": [{"type": "tensorzero::template", "name": "system", "arguments": {"assistant_name": "Alfred"}}],
}


def test_our_sync_client(serve_url):
    with TensorZeroRayClient(serve_url) as client:
        chat = client.inference(function_name="chat", input=CHAT_INPUT, tags={"client": "sync"})
        assert isinstance(chat, ChatInferenceResponse) and chat.content[0].text
        extracted = client.inference(function_name="extract", input=EXTRACT_INPUT)
        assert isinstance(extracted, JsonInferenceResponse) and extracted.output.parsed == {"answer": "Hello"}
        chunks = list(client.inference(function_name="chat", input=CHAT_INPUT, stream=True))
        assert all(isinstance(c, ChatChunk) for c in chunks) and chunks[-1].usage.output_tokens == 16
        weather = client.inference(function_name="weather", input=WEATHER_INPUT)
        assert weather.content[0].name == "get_temperature"
        assert weather.content[0].arguments == {"location": "Brooklyn", "units": "celsius"}
        feedback = client.feedback(metric_name="thumbs_up", value=True, inference_id=str(chat.inference_id))
        assert feedback.feedback_id.version == 7
        with pytest.raises(GatewayError) as caught:
            client.inference(function_name="missing", input=CHAT_INPUT)
        assert caught.value.status_code == 404 and caught.value.message == "Unknown function: missing"


async def test_our_async_client(serve_url):
    async with AsyncTensorZeroRayClient(serve_url) as client:
        chat = await client.inference(function_name="chat", input=CHAT_INPUT)
        chunks = [c async for c in await client.inference(function_name="chat", input=CHAT_INPUT, stream=True)]
        assert chunks[-1].finish_reason == "stop"
        feedback = await client.feedback(metric_name="task_success", value=False, episode_id=str(chat.episode_id))
        assert feedback.feedback_id
        with pytest.raises(GatewayError, match="Unknown metric"):
            await client.feedback(metric_name="nope", value=1, inference_id=str(chat.inference_id))


def test_openai_sdk(serve_url):
    client = OpenAI(base_url=f"{serve_url}/openai/v1", api_key="not-used")
    episode = str(uuid7())
    result = client.chat.completions.create(
        model="tensorzero::function_name::chat",
        messages=[SYSTEM_TEMPLATE, {"role": "user", "content": "Hello"}],
        extra_body={"tensorzero::episode_id": episode},
    )
    assert result.choices[0].message.content and result.model.startswith("tensorzero::function_name::chat::")
    assert result.usage.prompt_tokens == 10

    stream = client.chat.completions.create(
        model="tensorzero::function_name::chat",
        stream=True,
        stream_options={"include_usage": True},
        messages=[SYSTEM_TEMPLATE, {"role": "user", "content": "Hello"}],
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("Wally,")
    assert chunks[-1].usage.completion_tokens == 16

    tools = client.chat.completions.create(
        model="tensorzero::function_name::weather", messages=[{"role": "user", "content": "Weather?"}]
    )
    call = tools.choices[0].message.tool_calls[0]
    assert call.function.name == "get_temperature" and json.loads(call.function.arguments)["location"] == "Brooklyn"
    assert tools.choices[0].finish_reason == "tool_calls"

    extracted = client.chat.completions.create(
        model="tensorzero::function_name::extract",
        response_format={"type": "json_object"},
        messages=[{"role": "user", "content": [{"type": "text", "tensorzero::arguments": {"text": "Hello"}}]}],
    )
    assert json.loads(extracted.choices[0].message.content) == {"answer": "Hello"}

    embedding = client.embeddings.create(model="tensorzero::embedding_model_name::dummy::embedder", input="hi")
    assert len(embedding.data[0].embedding) == 1536

    from openai import NotFoundError

    with pytest.raises(NotFoundError):
        client.chat.completions.create(
            model="tensorzero::function_name::missing", messages=[{"role": "user", "content": "x"}]
        )


def test_tensorzero_pypi_client(serve_url):
    with TensorZeroGateway.build_http(gateway_url=serve_url) as client:
        chat = client.inference(function_name="chat", input=CHAT_INPUT)
        assert chat.content[0].text
        extracted = client.inference(function_name="extract", input=EXTRACT_INPUT)
        assert extracted.output.parsed == {"answer": "Hello"}
        chunks = list(client.inference(function_name="chat", input=CHAT_INPUT, stream=True))
        assert chunks[-1].usage.output_tokens == 16
        weather = client.inference(function_name="weather", input=WEATHER_INPUT)
        assert weather.content[0].name == "get_temperature" and weather.content[0].arguments["location"] == "Brooklyn"
        follow_up = client.inference(
            function_name="weather",
            episode_id=weather.episode_id,
            input={
                "messages": [
                    *WEATHER_INPUT["messages"],
                    {"role": "assistant", "content": weather.content},
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "id": weather.content[0].id,
                                "name": "get_temperature",
                                "result": "22",
                            }
                        ],
                    },
                ]
            },
        )
        assert follow_up.episode_id == weather.episode_id
        feedback = client.feedback(metric_name="thumbs_up", value=True, inference_id=chat.inference_id)
        assert feedback.feedback_id
        demo = client.feedback(metric_name="demonstration", value="Hello there", inference_id=chat.inference_id)
        assert demo.feedback_id


def test_what_the_tensorzero_client_serialises_parses(serve_url):
    """Its nulls (`source_url`, `text`, unset fields), thoughts from another provider (dropped
    before the call), and dynamic variants with inline templates in its own shape."""
    echo = "dummy::echo_request_messages"
    with TensorZeroGateway.build_http(gateway_url=serve_url) as client:
        answer = client.inference(
            model_name=echo,
            input={
                "messages": [
                    {"role": "user", "content": [Text(text="Look"), FileBase64(data=PIXEL, mime_type="image/png")]},
                    {
                        "role": "assistant",
                        "content": [
                            Thought(text=None, signature="theirs", provider_type="anthropic"),
                            Thought(text=None, signature="anyone's"),
                            Text(text="Seen"),
                        ],
                    },
                ]
            },
        )
        sent = json.loads(answer.content[0].text)["messages"]
        assert [b["type"] for b in sent[0]["content"]] == ["text", "file"]
        assert sent[1]["content"] == [{"type": "thought", "signature": "anyone's"}, {"type": "text", "text": "Seen"}]
        deadline = time.monotonic() + 30
        while not (
            found := client.get_inferences(ids=[str(answer.inference_id)], output_source="inference").inferences
        ):
            assert time.monotonic() < deadline, "the inference never became visible"
            time.sleep(0.2)  # stored rows reach ClickHouse in the background; nothing to await from outside
        stored = found[0]
        thoughts = [b for b in stored.input.messages[1].content if b.type == "thought"]
        assert [(b.text, b.signature) for b in thoughts] == [(None, "theirs"), (None, "anyone's")]

        inline = {"__tensorzero_remapped_path": "inline/system.minijinja", "__data": "Sir {{ assistant_name }}"}
        dynamic = client.inference(
            function_name="chat",
            input=CHAT_INPUT,
            dryrun=True,
            variant_name="trial",
            internal_dynamic_variant_config={"type": "chat_completion", "model": echo, "system_template": inline},
        )
        assert json.loads(dynamic.content[0].text)["system"] == "Sir Alfred"
        best_of_n = {
            "type": "experimental_best_of_n_sampling",
            "candidates": ["baseline", "safe"],
            "evaluator": {"model": echo, "system_template": inline},
        }
        for shape in (best_of_n, {**best_of_n, "type": "experimental_mixture_of_n", "fuser": best_of_n["evaluator"]}):
            if shape["type"] == "experimental_mixture_of_n":
                shape = {k: v for k, v in shape.items() if k != "evaluator"}
            with pytest.raises(TensorZeroError) as refused:
                client.inference(function_name="chat", input=CHAT_INPUT, internal_dynamic_variant_config=shape)
            assert refused.value.status_code == 400 and "requires `dryrun: true`" in refused.value.text


def test_workflow_evaluations_from_both_clients(serve_url):
    with TensorZeroGateway.build_http(gateway_url=serve_url) as theirs:
        run = theirs.workflow_evaluation_run(variants={"chat": "safe"}, project_name="clients", tags={"who": "pypi"})
        episode = theirs.workflow_evaluation_run_episode(run_id=run.run_id, task_name="greet")
        answer = theirs.inference(function_name="chat", input=CHAT_INPUT, episode_id=episode.episode_id)
        assert answer.variant_name == "safe" and answer.episode_id == episode.episode_id
    with TensorZeroRayClient(serve_url) as ours:
        run_id = ours.workflow_evaluation_run(variants={"chat": "safe"}, display_name="ours")
        episode_id = ours.workflow_evaluation_run_episode(run_id=run_id, task_name="greet", tags={"step": "1"})
        answer = ours.inference(function_name="chat", input=CHAT_INPUT, episode_id=episode_id)
        assert answer.variant_name == "safe" and str(answer.episode_id) == episode_id


def test_a_ray_task_uses_the_in_cluster_client(serve_url):
    script = textwrap.dedent("""
        import asyncio, json, ray
        from tensorzero_ray.client import AsyncClusterClient, ClusterClient, GatewayError

        CHAT = {"system": {"assistant_name": "Alfred"}, "messages": [{"role": "user", "content": "Hello"}]}

        @ray.remote(num_cpus=0)
        def blocking():
            client = ClusterClient()
            response = client.inference(function_name="chat", input=CHAT)
            chunks = list(client.inference(function_name="chat", input=CHAT, stream=True))
            feedback = client.feedback(metric_name="thumbs_up", value=True, inference_id=str(response.inference_id))
            try:
                client.inference(function_name="missing", input=CHAT)
                status = None
            except GatewayError as error:
                status = error.status_code
            dataset = "cluster_" + str(response.inference_id)[-8:]
            made = client.create_datapoints_from_inferences(dataset, inference_ids=[str(response.inference_id)])
            listed = client.list_datapoints(dataset)
            try:
                client.list_datapoints("never_made_" + dataset)
                missing = None
            except GatewayError as error:
                missing = error.status_code
            return {"text": response.content[0].text, "chunks": len(chunks), "feedback": str(feedback.feedback_id),
                    "status": status, "datapoints": [p.id for p in listed] == made, "missing": missing}

        @ray.remote(num_cpus=0)
        def non_blocking():
            async def run():
                client = AsyncClusterClient()
                response = await client.inference(function_name="extract", input={"messages": [{"role": "user",
                    "content": [{"type": "template", "name": "user", "arguments": {"text": "x"}}]}]})
                # Feedback waits until the fresh inference is stored, so it can be read back.
                await client.feedback(metric_name="thumbs_up", value=True, inference_id=str(response.inference_id))
                found = await client.get_inferences([str(response.inference_id)])
                return {"parsed": response.output.parsed, "found": found[0].inference_id == str(response.inference_id)}
            return asyncio.run(run())

        ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
        print(json.dumps({"blocking": ray.get(blocking.remote()), "async": ray.get(non_blocking.remote())}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["blocking"]["text"] and result["blocking"]["chunks"] == 17
    assert result["blocking"]["feedback"] and result["blocking"]["status"] == 404
    assert result["blocking"]["datapoints"] is True and result["blocking"]["missing"] == 404
    assert result["async"] == {"parsed": {"answer": "Hello"}, "found": True}
