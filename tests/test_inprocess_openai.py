"""The OpenAI surface and its error shapes, against the real app in process (fake upstream):
the e2e tests of ``test_serve_bad_input.py`` and ``test_serve_openai_e2e.py``, in milliseconds.
The generated text is the fake's (``tok`` x 5); everything else is the gateway's own."""

from __future__ import annotations

import json

import openai
import pytest

from tests.support.inprocess import MODEL, openai_client
from tests.test_serve_bad_input import BAD_COMPLETIONS, GOOD, assert_openai_error


def assert_still_serving(client) -> None:
    good = client.post("/v1/completions", json=GOOD)
    assert good.status_code == 200, good.text
    assert good.json()["choices"][0]["text"] is not None


# --- shapes ----------------------------------------------------------------------------------


def test_models_lists_the_served_model_with_its_limits(app_client):
    models = app_client.get("/v1/models").json()
    assert models["object"] == "list"
    (model,) = models["data"]
    assert model["id"] == MODEL and model["object"] == "model"
    assert model["max_model_len"] == 4096 and model["fim_template"] is None


def test_a_completion_has_openai_fields_and_usage(app_client):
    response = app_client.post("/v1/completions", json={**GOOD, "max_tokens": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert body["model"] == MODEL
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["text"] == "tok tok tok tok tok "
    assert choice["finish_reason"] == "length"
    usage = body["usage"]
    assert usage["completion_tokens"] == 5
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_a_streamed_completion_is_server_sent_events_ending_in_done(app_client):
    body = {**GOOD, "max_tokens": 5, "stream": True, "stream_options": {"include_usage": True}}
    with app_client.stream("POST", "/v1/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line.strip()]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(c["object"] == "text_completion" and c["model"] == MODEL for c in chunks)
    text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
    assert text == "tok tok tok tok tok "
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
    finished = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [c["choices"][0]["finish_reason"] for c in finished] == ["length"]


def test_a_chat_completion_has_openai_fields(app_client):
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    response = app_client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["object"] == "chat.completion" and answer["id"].startswith("chatcmpl-")
    (choice,) = answer["choices"]
    assert choice["message"] == {"role": "assistant", "content": "tok tok tok tok tok "}
    assert choice["finish_reason"] == "length"
    assert answer["usage"]["prompt_tokens"] > 1  # the chat template's tokens, counted here


def test_the_openai_sdk_reads_completions_streams_and_models(app_client):
    client = openai_client(app_client)
    completion = client.completions.create(model=MODEL, prompt="a = ", max_tokens=5)
    assert completion.choices[0].text == "tok tok tok tok tok "
    assert completion.usage is not None and completion.usage.completion_tokens == 5
    streamed = client.completions.create(model=MODEL, prompt="a = ", max_tokens=5, stream=True)
    assert "".join(chunk.choices[0].text for chunk in streamed if chunk.choices).startswith("tok")
    assert [m.id for m in client.models.list()] == [MODEL]


def test_the_sdk_raises_its_own_errors_for_the_gateways_4xx(app_client):
    client = openai_client(app_client)
    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model="gpt-17", prompt="x", max_tokens=1)
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=MODEL, prompt="x", max_tokens=1, n=3)


def test_a_streamed_chat_starts_with_the_assistant_role(app_client):
    stream = openai_client(app_client).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5, stream=True
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finished = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finished[-1] in {"stop", "length"}


def test_fim_on_a_model_without_fim_tokens_completes_the_prefix_and_says_so(app_client):
    client = openai_client(app_client)
    prefix = "def greet(name):\n    "
    raw = client.completions.with_raw_response.create(
        model=MODEL, prompt=prefix, suffix="\n    return message\n", max_tokens=8
    )
    assert raw.headers["x-coderig-fim"] == "prefix-only"
    completion = raw.parse()
    assert completion.choices[0].text
    # The upstream counts what it was sent: the suffix was not silently glued on.
    plain = client.completions.create(model=MODEL, prompt=prefix, max_tokens=1)
    assert completion.usage.prompt_tokens == plain.usage.prompt_tokens


def test_health_ready_and_metrics(app_client):
    app_client.post("/v1/completions", json=GOOD)
    assert app_client.get("/health").json() == {"status": "ok"}
    ready = app_client.get("/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert [r["state"] for r in ready.json()["replicas"]] == ["ready"]
    metrics = app_client.get("/metrics")
    assert metrics.status_code == 200
    assert 'coderig_requests_total{route="completions",status="200"}' in metrics.text
    assert "coderig_time_to_first_token_seconds_bucket" in metrics.text
    assert "coderig_request_duration_seconds_count" in metrics.text
    assert 'coderig_replica_requests_in_flight{replica="replica-0"} 0.0' in metrics.text
    assert "coderig_completion_tokens_total" in metrics.text


# --- errors (ported from test_serve_bad_input.py, which stays e2e) -----------------------------


@pytest.mark.parametrize(("body", "content_type", "param", "contains"), BAD_COMPLETIONS)
def test_bad_completion_request_is_a_400_and_the_server_keeps_serving(
    app_client, body, content_type, param, contains
):
    if isinstance(body, bytes):
        response = app_client.post(
            "/v1/completions", content=body, headers={"content-type": content_type}
        )
    else:
        response = app_client.post("/v1/completions", json={"model": MODEL, **body})
    assert_openai_error(response, 400, param=param, contains=contains)
    assert_still_serving(app_client)


def test_prompt_plus_max_tokens_beyond_the_context_says_both_numbers(app_client):
    prompt = "word " * 3000
    response = app_client.post("/v1/completions", json={"prompt": prompt, "max_tokens": 1500})
    error = assert_openai_error(response, 400, param="max_tokens")
    assert error["code"] == "context_length_exceeded"
    assert "4096" in error["message"] and "1500" in error["message"]
    assert_still_serving(app_client)


def test_unknown_model_is_a_404_naming_the_served_model(app_client):
    response = app_client.post("/v1/completions", json={**GOOD, "model": "gpt-17"})
    error = assert_openai_error(response, 404, param="model", contains=MODEL)
    assert error["code"] == "model_not_found"
    assert_still_serving(app_client)


def test_oversized_body_is_a_413(app_client):
    response = app_client.post("/v1/completions", json={"prompt": "x" * (3 * 1024 * 1024)})
    assert_openai_error(response, 413, contains="limit")
    assert_still_serving(app_client)


def test_chat_without_messages_and_with_tools_are_400s(app_client):
    chat = "/v1/chat/completions"
    assert_openai_error(
        app_client.post(chat, json={"model": MODEL, "messages": []}), 400, param="messages"
    )
    tools = {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}
    assert_openai_error(app_client.post(chat, json=tools), 400, param="tools")
    robot = {"messages": [{"role": "robot", "content": "hi"}]}
    assert_openai_error(app_client.post(chat, json=robot), 400)
    assert_still_serving(app_client)


def test_unknown_route_and_wrong_method_are_openai_shaped(app_client):
    assert_openai_error(app_client.get("/v1/nothing-here"), 404)
    assert_openai_error(app_client.get("/v1/completions"), 405)


def test_unknown_fields_are_ignored_like_vllm(app_client):
    response = app_client.post("/v1/completions", json={**GOOD, "frobnicate": True})
    assert response.status_code == 200


def test_a_form_encoded_body_is_a_415_that_asks_for_json(app_client):
    response = app_client.post(
        "/v1/completions",
        content=b"prompt=x",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert_openai_error(response, 415, contains="application/json")
    assert_still_serving(app_client)
