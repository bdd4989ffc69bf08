"""Each editor API's request and response shapes and its own error shape (Tabby, llama.cpp's
``/infill``, Ollama), against the real app in process with a fake upstream: the shape tests of
``test_editors_api.py`` (which stays e2e for what needs the real model: stop rules, time
budgets, the prefix cache). The generated text is the fake's (``tok`` x 5)."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.inprocess import MODEL

JSON = {"content-type": "application/json"}
PY_PREFIX = "def fibonacci(n):\n    if n < 2:\n        return n\n    return "


def stream_lines(client, path: str, body: dict):
    with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200, response.read()
        return response.headers, [line for line in response.iter_lines() if line.strip()]


def metric(client, name: str, **labels) -> float:
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        series, _, value = line.rpartition(" ")
        if line.startswith("#") or series.split("{")[0] != name:
            continue
        if all(f'{key}="{val}"' in series for key, val in labels.items()):
            total += float(value)
    return total


# --- Tabby -------------------------------------------------------------------------------------


def test_tabby_health_has_the_fields_the_agent_reads(app_client):
    health = app_client.get("/v1/health").json()
    assert health["model"] == MODEL
    assert re.match(r"v\d+\.\d+\.\d+", health["version"]["git_describe"])
    assert isinstance(health["cpu_count"], int) and health["cuda_devices"] == []
    assert app_client.post("/v1/health").json()["model"] == MODEL


def test_tabby_server_setting_turns_client_telemetry_off(app_client):
    setting = app_client.get("/v1beta/server_setting").json()
    assert setting == {"disable_client_side_telemetry": True}


def test_tabby_completion_puts_snippets_as_comments_ahead_of_the_prefix(app_client):
    body = {
        "language": "python",
        "segments": {
            "prefix": PY_PREFIX,
            "suffix": "\n\nprint(fibonacci(10))\n",
            "filepath": "src/fib.py",
            "declarations": [{"filepath": "src/memo.py", "body": "def memo(f):\n    ..."}],
            "relevant_snippets_from_changed_files": [
                {"filepath": "src/util.py", "body": "LIMIT = 30", "score": 0.9}
            ],
            "clipboard": "fibonacci(n - 1)",
        },
        "temperature": 0,
        "debug_options": {"return_prompt": True, "return_snippets": True},
    }
    response = app_client.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["id"].startswith("cmpl-")
    assert answer["choices"][0]["index"] == 0
    assert isinstance(answer["choices"][0]["text"], str)
    prompt = answer["debug_data"]["prompt"]
    assert "# Path: src/memo.py\n# def memo(f):\n#     ...\n" in prompt
    assert "# Path: src/util.py\n# LIMIT = 30\n" in prompt
    assert prompt.endswith(PY_PREFIX)  # SmolLM2's vocabulary has no FIM tokens: prefix-only
    assert response.headers["x-coderig-fim"] == "prefix-only"
    assert len(answer["debug_data"]["snippets"]) == 3


def test_the_shared_path_still_answers_openai_bodies_the_openai_way(app_client):
    response = app_client.post(
        "/v1/completions", json={"prompt": PY_PREFIX, "max_tokens": 4, "temperature": 0}
    )
    assert response.status_code == 200
    assert response.json()["object"] == "text_completion"


@pytest.mark.parametrize(
    ("content", "status", "start"),
    [
        pytest.param('{"segments": {"prefix": 5}}', 422, "Failed to deserialize", id="type"),
        pytest.param('{"segments": {}}', 422, "Failed to deserialize", id="no-prefix"),
        pytest.param('{"segments": {"prefix": ""}}', 400, "segments.prefix", id="empty"),
        pytest.param(
            '{"segments": {"prefix": "x"}, "mode": "next_edit_suggestion"}',
            400,
            "mode",
            id="next-edit",
        ),
    ],
)
def test_tabby_rejects_bad_completions_in_plain_text(app_client, content, status, start):
    response = app_client.post("/v1/completions", content=content, headers=JSON)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/plain")
    assert start in response.text


def test_tabby_events_are_recorded_and_bad_events_are_a_plain_422(app_client):
    completion = app_client.post(
        "/v1/completions",
        json={"language": "rust", "segments": {"prefix": "fn main() {\n    let x = "}},
    ).json()
    labels = {"language": "rust", "key": "anonymous"}
    before = metric(app_client, "coderig_completion_events_total", event="view", **labels)
    event = {"completion_id": completion["id"], "choice_index": 0}
    assert app_client.post("/v1/events", json={"type": "view", **event}).status_code == 200
    selected = app_client.post("/v1/events?select_kind=line", json={"type": "select", **event})
    assert selected.is_success
    after = metric(app_client, "coderig_completion_events_total", event="view", **labels)
    assert after == before + 1
    assert metric(app_client, "coderig_completion_acceptance_rate", **labels) > 0
    bad = app_client.post("/v1/events", json={"type": "bogus", **event})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/plain")
    not_json = app_client.post("/v1/events", content=b"{", headers=JSON)
    assert not_json.status_code == 400 and "Failed to parse" in not_json.text


# --- llama.cpp /infill ---------------------------------------------------------------------------


def test_infill_returns_content_and_llama_cpp_fields(app_client):
    response = app_client.post(
        "/infill",
        json={
            "input_prefix": "def fibonacci(n):\n",
            "prompt": "    ",
            "input_suffix": "\n",
            "input_extra": [{"filename": "util.py", "text": "LIMIT = 30\n", "time": [1, 2]}],
            "n_predict": 16,
            "temperature": 0,
            "cache_prompt": True,
        },
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert isinstance(answer["content"], str)
    assert answer["truncated"] is False and answer["stop"] is True
    assert answer["stop_type"] in {"eos", "limit", "word"}
    assert isinstance(answer["tokens_cached"], int)
    assert answer["timings"]["predicted_n"] >= 1
    assert 1 <= answer["tokens_predicted"] <= 16


def test_infill_response_fields_are_lifted_as_llama_vim_asks(app_client):
    fields = [
        "content",
        "timings/predicted_n",
        "timings/predicted_ms",
        "truncated",
        "tokens_cached",
    ]
    body = {"input_prefix": "x = 1\n", "prompt": "y = ", "n_predict": 4, "response_fields": fields}
    answer = app_client.post("/infill", json=body).json()
    assert set(answer) == set(fields)
    assert answer["timings/predicted_n"] >= 1


def test_infill_n_predict_0_returns_an_empty_answer(app_client):
    extra = [{"filename": "notes.py", "text": "# the ring buffer chunk\nTOTAL = 42\n"}]
    body = {"input_prefix": "", "input_suffix": "", "input_extra": extra, "n_predict": 0}
    warm = app_client.post("/infill", json=body)
    assert warm.status_code == 200 and warm.json()["content"] == ""


def test_infill_streams_server_sent_events(app_client):
    body = {"input_prefix": "def add(a, b):\n", "prompt": "    ", "n_predict": 8, "stream": True}
    headers, lines = stream_lines(app_client, "/infill", body)
    assert headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[5:]) for line in lines if line.startswith("data:")]
    assert events[-1]["stop"] is True and "timings" in events[-1]
    assert all(event["stop"] is False for event in events[:-1])


@pytest.mark.parametrize(
    ("content", "contains"),
    [
        pytest.param(b'{"input_prefix": 5}', "input_prefix", id="type"),
        pytest.param(b'{"input_prefix": "x", ', "JSON", id="malformed"),
        pytest.param(b"[1]", "JSON object", id="not-an-object"),
        pytest.param(b'{"input_prefix": "x", "n_predict": -5}', "n_predict", id="range"),
    ],
)
def test_infill_rejects_bad_bodies_in_llama_cpp_shape(app_client, content, contains):
    response = app_client.post("/infill", content=content)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"code", "message", "type"}
    assert error["code"] == 400 and error["type"] == "invalid_request_error"
    assert contains in error["message"]


def test_an_empty_infill_is_an_empty_completion(app_client):
    body = {"input_prefix": "", "input_suffix": "", "n_predict": 8}
    answer = app_client.post("/infill", json=body).json()
    assert answer["content"] == "" and answer["stop"] is True


# --- Ollama --------------------------------------------------------------------------------------


def test_ollama_generate_streams_ndjson_then_a_done_line(app_client):
    headers, raw = stream_lines(
        app_client,
        "/api/generate",
        {"model": MODEL, "prompt": PY_PREFIX, "options": {"num_predict": 12}},
    )
    assert headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in raw]
    assert all(line["done"] is False and line["model"] == MODEL for line in lines[:-1])
    last = lines[-1]
    assert last["done"] is True and last["done_reason"] in {"stop", "length"}
    assert last["eval_count"] >= 1 and last["prompt_eval_count"] > 0
    assert "".join(line["response"] for line in lines).strip()


def test_ollama_generate_with_suffix_and_without_streaming(app_client):
    response = app_client.post(
        "/api/generate",
        json={
            "model": f"{MODEL}:latest",
            "prompt": "def add(a, b):\n    ",
            "suffix": "\n\nprint(add(1, 2))\n",
            "stream": False,
            "options": {"num_predict": 12, "temperature": 0},
            "keep_alive": "30m",
        },
    )
    assert response.status_code == 200
    answer = response.json()
    assert answer["done"] is True and isinstance(answer["response"], str)


def test_ollama_empty_prompt_loads_the_model_and_returns_at_once(app_client):
    answer = app_client.post("/api/generate", json={"model": MODEL}).json()
    assert answer["done"] is True and answer["done_reason"] == "load"


def test_ollama_tags_and_show_tell_continue_the_model_takes_a_suffix(app_client):
    tags = app_client.get("/api/tags").json()
    assert [m["name"] for m in tags["models"]] == [f"{MODEL}:latest"]
    assert tags["models"][0]["size"] > 0
    show = app_client.post("/api/show", json={"name": MODEL}).json()
    assert ".Suffix" in show["template"]  # Continue's FIM check
    assert "insert" in show["capabilities"]
    # Continue parses each parameter line with this pattern and gives up on one that fails it.
    for line in show["parameters"].split("\n"):
        assert re.match(r'^(\S+)\s+((?:".*")|\S+)$', line), line


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        pytest.param({"prompt": "x"}, 400, "model is required", id="no-model"),
        pytest.param({"model": "codellama:7b", "prompt": "x"}, 404, "not found", id="unknown"),
        pytest.param(
            {"model": MODEL, "prompt": "x", "raw": True, "system": "s"}, 400, "raw", id="raw"
        ),
        pytest.param({"model": MODEL, "prompt": 3}, 400, "prompt", id="type"),
        pytest.param(
            {"model": MODEL, "prompt": "x", "options": {"top_p": 5}}, 400, "top_p", id="range"
        ),
    ],
)
def test_ollama_errors_are_ollama_shaped(app_client, body, status, message):
    response = app_client.post("/api/generate", json=body)
    assert response.status_code == status
    error = response.json()
    assert set(error) == {"error"} and isinstance(error["error"], str)
    assert message in error["error"]


def test_ollama_bad_json_and_unknown_show_model(app_client):
    bad = app_client.post("/api/generate", content=b"{nope")
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]
    missing = app_client.post("/api/show", json={"model": "llama3"})
    assert missing.status_code == 404 and "not found" in missing.json()["error"]


# --- hardening -----------------------------------------------------------------------------------


def test_unpaired_surrogates_are_a_400_in_each_shape_not_a_500(app_client):
    bad = '"\\ud800x"'
    tabby = app_client.post(
        "/v1/completions", content=f'{{"segments": {{"prefix": {bad}}}}}', headers=JSON
    )
    assert tabby.status_code == 422 and "surrogate" in tabby.text
    infill = app_client.post("/infill", content=f'{{"input_prefix": {bad}}}')
    assert infill.status_code == 400 and "surrogate" in infill.json()["error"]["message"]
    ollama = app_client.post("/api/generate", content=f'{{"model": "{MODEL}", "prompt": {bad}}}')
    assert ollama.status_code == 400 and "surrogate" in ollama.json()["error"]


def test_the_openapi_document_stays_coderigs_own(app_client):
    schema = app_client.get("/openapi.json").json()
    body = schema["paths"]["/v1/completions"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CompletionRequest"
    }
    assert not {"/infill", "/api/generate", "/v1/health", "/v1/events"} & set(schema["paths"])


@pytest.mark.parametrize("path", ["/infill", "/api/generate", "/v1/completions"])
def test_deeply_nested_json_is_a_400_on_every_editor_route(app_client, path):
    body = b'{"prompt": ' + b"[" * 50000 + b"]" * 50000 + b"}"
    response = app_client.post(path, content=body, headers=JSON)
    assert response.status_code == 400
