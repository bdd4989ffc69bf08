"""The official openai SDK against a real `coderig serve` on the embedded SmolLM2."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.engine import replica_auth

pytestmark = pytest.mark.e2e

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)


def test_models_list_names_the_embedded_model(client):
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]


def test_completion_returns_text_and_the_engines_own_usage(server, client):
    prompt = "def add(a, b):\n"
    completion = client.completions.create(model=MODEL, prompt=prompt, max_tokens=8, temperature=0)
    choice = completion.choices[0]
    assert completion.object == "text_completion"
    assert choice.text
    assert choice.finish_reason in {"stop", "length"}
    # The replica itself (llama-cpp-python, non-streaming) counts the same tokens.
    replica_url = server.ready_info()["replicas"][0]["url"]
    direct = httpx.post(
        f"{replica_url}/v1/completions",
        headers=replica_auth(replica_url),  # the replica answers only the gateway
        json={"prompt": prompt, "max_tokens": 8, "temperature": 0},
        timeout=60,
    ).json()
    assert completion.usage.prompt_tokens == direct["usage"]["prompt_tokens"]
    assert completion.usage.completion_tokens == direct["usage"]["completion_tokens"]
    assert choice.text == direct["choices"][0]["text"]
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_a_repeated_prompt_reports_the_tokens_the_engine_found_cached(client):
    # what llama-server reports (usage.prompt_tokens_details.cached_tokens), passed on as
    # OpenAI and vLLM put it: editors and `coderig bench` read their cache hits from it
    prompt = "class RingBuffer:\n    def __init__(self, size):\n        self.size = size\n" * 3
    first = client.completions.create(model=MODEL, prompt=prompt, max_tokens=4, temperature=0)
    again = client.completions.create(model=MODEL, prompt=prompt, max_tokens=4, temperature=0)
    cached = again.usage.prompt_tokens_details.cached_tokens
    assert 0 < cached < again.usage.prompt_tokens == first.usage.prompt_tokens
    chunks = list(
        client.completions.create(
            model=MODEL, prompt=prompt, max_tokens=4, temperature=0, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == cached


def test_greedy_completion_is_deterministic(client):
    kwargs = dict(model=MODEL, prompt="import os\nimport", max_tokens=6, temperature=0)
    first = client.completions.create(**kwargs).choices[0].text
    second = client.completions.create(**kwargs).choices[0].text
    assert first == second


def test_max_tokens_is_honoured_exactly_with_ignore_eos(client):
    completion = client.completions.create(
        model=MODEL,
        prompt="for i in range(10):",
        max_tokens=12,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert completion.usage.completion_tokens == 12
    assert completion.choices[0].finish_reason == "length"


def test_streaming_completion_yields_chunks_then_a_finish_reason(client):
    stream = client.completions.create(
        model=MODEL,
        prompt="class Stack:\n",
        max_tokens=10,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    texts = [c.choices[0].text for c in chunks if c.choices]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert len([t for t in texts if t]) >= 2
    assert finishes[-1] in {"stop", "length"}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1


def test_streamed_text_equals_non_streamed_text(client):
    kwargs = dict(model=MODEL, prompt="def square(x):\n", max_tokens=10, temperature=0)
    whole = client.completions.create(**kwargs).choices[0].text
    streamed = "".join(
        c.choices[0].text for c in client.completions.create(stream=True, **kwargs) if c.choices
    )
    assert streamed == whole


def test_stop_sequence_ends_the_completion(client):
    completion = client.completions.create(
        model=MODEL,
        prompt="def f():\n    return 1\n\ndef g():\n",
        max_tokens=40,
        temperature=0,
        stop=["\n"],
    )
    assert "\n" not in completion.choices[0].text


def test_chat_completion_uses_the_chat_template(client):
    chat = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=16,
        temperature=0,
    )
    assert chat.object == "chat.completion"
    assert chat.choices[0].message.role == "assistant"
    assert chat.choices[0].message.content
    # SmolLM2's template adds a default system prompt: far more than the user's 3 words.
    assert chat.usage.prompt_tokens > 20


def test_streaming_chat_starts_with_the_assistant_role(client):
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Write a Python comment."}],
        max_tokens=8,
        temperature=0,
        stream=True,
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert content
    assert chunks[-1].choices[0].finish_reason in {"stop", "length"}


def test_health_ready_and_metrics_routes(server, client):
    client.completions.create(model=MODEL, prompt="x = ", max_tokens=2)
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/ready").json()
    assert ready["ready"] is True
    assert ready["replicas"][0]["state"] == "ready"
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'coderig_requests_total{route="completions",status="200"}' in metrics
    assert "coderig_time_to_first_token_seconds_bucket" in metrics
    assert "coderig_request_duration_seconds_count" in metrics
    assert 'coderig_replica_requests_in_flight{replica="replica-0"} 0.0' in metrics
    assert "coderig_completion_tokens_total" in metrics
