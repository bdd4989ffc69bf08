"""Bad input gets an OpenAI-shaped 4xx that names the problem, and the server keeps serving."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.e2e

MODEL = "smollm2-135m-instruct"
GOOD = {"model": MODEL, "prompt": "x = 1\ny = ", "max_tokens": 2, "temperature": 0}


def post(server, path: str, **kwargs) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", timeout=60, **kwargs)


def assert_openai_error(response: httpx.Response, status: int, *, param=None, contains=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in error["message"]
    if param is not None:
        assert error["param"] == param
    if contains is not None:
        assert contains in error["message"]
    return error


def assert_still_serving(server):
    good = post(server, "/v1/completions", json=GOOD)
    assert good.status_code == 200, good.text
    assert good.json()["choices"][0]["text"] is not None


BAD_COMPLETIONS = [
    pytest.param(b'{"prompt": "x", ', "application/json", None, "JSON", id="malformed-json"),
    pytest.param(b"[1, 2]", "application/json", None, "JSON object", id="not-an-object"),
    pytest.param(b"", "application/json", None, None, id="empty-body"),
    pytest.param({"max_tokens": 5}, None, "prompt", "prompt", id="missing-prompt"),
    pytest.param({"prompt": 42}, None, "prompt", None, id="prompt-wrong-type"),
    pytest.param({"prompt": ""}, None, "prompt", "empty", id="empty-prompt"),
    pytest.param({"prompt": ["a", "b"]}, None, "prompt", "one prompt", id="batch-prompt"),
    pytest.param(
        {"prompt": "x", "max_tokens": -1}, None, "max_tokens", None, id="negative-max-tokens"
    ),
    pytest.param({"prompt": "x", "max_tokens": 0}, None, "max_tokens", None, id="zero-max-tokens"),
    pytest.param(
        {"prompt": "x", "max_tokens": "5"}, None, "max_tokens", None, id="max-tokens-string"
    ),
    pytest.param(
        {"prompt": "x", "max_tokens": 10**9}, None, "max_tokens", "2048", id="huge-max-tokens"
    ),
    pytest.param(
        {"prompt": "x", "temperature": 7}, None, "temperature", None, id="temperature-range"
    ),
    pytest.param({"prompt": "x", "top_p": 0}, None, "top_p", None, id="top-p-range"),
    pytest.param({"prompt": "x", "n": 3}, None, "n", "n=1", id="n-above-one"),
    pytest.param({"prompt": "x", "logprobs": 5}, None, "logprobs", "not supported", id="logprobs"),
    pytest.param({"prompt": "x", "echo": True}, None, "echo", "not supported", id="echo"),
    pytest.param({"prompt": "x", "best_of": 2}, None, "best_of", None, id="best-of"),
    pytest.param({"prompt": "x", "stop": [""]}, None, "stop", None, id="empty-stop"),
    pytest.param({"prompt": "x", "stop": ["a"] * 20}, None, "stop", "16", id="too-many-stops"),
    pytest.param({"prompt": "x", "stream": "yes"}, None, "stream", None, id="stream-wrong-type"),
]


@pytest.mark.parametrize(("body", "content_type", "param", "contains"), BAD_COMPLETIONS)
def test_bad_completion_request_is_a_400_and_the_server_keeps_serving(
    server, body, content_type, param, contains
):
    if isinstance(body, bytes):
        response = post(
            server, "/v1/completions", content=body, headers={"content-type": content_type}
        )
    else:
        response = post(server, "/v1/completions", json={"model": MODEL, **body})
    assert_openai_error(response, 400, param=param, contains=contains)
    assert_still_serving(server)


def test_prompt_plus_max_tokens_beyond_the_context_says_both_numbers(server):
    prompt = "word " * 3000
    response = post(server, "/v1/completions", json={"prompt": prompt, "max_tokens": 1500})
    error = assert_openai_error(response, 400, param="max_tokens")
    assert error["code"] == "context_length_exceeded"
    assert "4096" in error["message"] and "1500" in error["message"]
    assert_still_serving(server)


def test_unknown_model_is_a_404_naming_the_served_model(server):
    response = post(server, "/v1/completions", json={**GOOD, "model": "gpt-17"})
    error = assert_openai_error(response, 404, param="model", contains=MODEL)
    assert error["code"] == "model_not_found"
    assert_still_serving(server)


def test_oversized_body_is_a_413(server):
    response = post(server, "/v1/completions", json={"prompt": "x" * (3 * 1024 * 1024)})
    assert_openai_error(response, 413, contains="limit")
    assert_still_serving(server)


def test_chat_without_messages_and_with_tools_are_400s(server):
    assert_openai_error(
        post(server, "/v1/chat/completions", json={"model": MODEL, "messages": []}),
        400,
        param="messages",
    )
    assert_openai_error(
        post(
            server,
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]},
        ),
        400,
        param="tools",
    )
    assert_openai_error(
        post(
            server, "/v1/chat/completions", json={"messages": [{"role": "robot", "content": "hi"}]}
        ),
        400,
    )
    assert_still_serving(server)


def test_unknown_route_and_wrong_method_are_openai_shaped(server):
    assert_openai_error(httpx.get(f"{server.url}/v1/nothing-here"), 404)
    assert_openai_error(httpx.get(f"{server.url}/v1/completions"), 405)


def test_a_form_encoded_body_is_a_415_that_asks_for_json(server):
    response = post(
        server,
        "/v1/completions",
        content=b"prompt=x",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert_openai_error(response, 415, contains="application/json")
    assert_still_serving(server)
