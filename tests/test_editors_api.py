"""Each editor API shape, request and response, against `coderig serve` on the embedded model;
malformed requests get each API's own error shape."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

pytestmark = pytest.mark.e2e

MODEL = "smollm2-135m-instruct"
PY_PREFIX = "def fibonacci(n):\n    if n < 2:\n        return n\n    return "
# Greedy SmolLM2 continues this with a comment, then `def main():` after a blank line.
# The embedded model completes this with code, a blank line and prose: something to cut.
RULE_PROMPT = 'import os\n\n\ndef list_files(path):\n    """List files."""\n'


def post(server, path: str, **kwargs) -> httpx.Response:
    """POST, retrying a 503 as its Retry-After says (a replica briefly unhealthy on a loaded
    machine), as an editor would."""
    deadline = time.monotonic() + 60
    while True:
        response = httpx.post(f"{server.url}{path}", timeout=120, **kwargs)
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
        time.sleep(float(response.headers.get("retry-after", "1")))


def stream_lines(server, path: str, body: dict) -> tuple[httpx.Headers, list[str]]:
    """The response lines of a streamed POST (retrying a 503 before the stream starts)."""
    deadline = time.monotonic() + 60
    while True:
        with httpx.stream("POST", f"{server.url}{path}", json=body, timeout=120) as response:
            if response.status_code == 503 and time.monotonic() < deadline:
                time.sleep(float(response.headers.get("retry-after", "1")))
                continue
            assert response.status_code == 200, response.read()
            return response.headers, [line for line in response.iter_lines() if line.strip()]


def metric(server, name: str, **labels) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        if series.split("{")[0] != name:
            continue
        if all(f'{key}="{val}"' in series for key, val in labels.items()):
            total += float(value)
    return total


# --- Tabby -----------------------------------------------------------------------------------


def test_tabby_health_has_the_fields_the_agent_reads(server):
    health = httpx.get(f"{server.url}/v1/health", timeout=10).json()
    assert health["model"] == MODEL and health["device"] == "cpu"
    assert re.match(r"v\d+\.\d+\.\d+", health["version"]["git_describe"])
    assert isinstance(health["cpu_count"], int) and health["cuda_devices"] == []
    assert httpx.post(f"{server.url}/v1/health", timeout=10).json()["model"] == MODEL


def test_tabby_server_setting_turns_client_telemetry_off(server):
    setting = httpx.get(f"{server.url}/v1beta/server_setting", timeout=10).json()
    assert setting == {"disable_client_side_telemetry": True}


def test_tabby_completion_puts_snippets_as_comments_ahead_of_the_prefix(server):
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
    response = post(server, "/v1/completions", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["id"].startswith("cmpl-")
    assert answer["choices"][0]["index"] == 0
    assert isinstance(answer["choices"][0]["text"], str)  # may be cut to "" by a stop rule
    prompt = answer["debug_data"]["prompt"]
    assert "# Path: src/memo.py\n# def memo(f):\n#     ...\n" in prompt
    assert "# Path: src/util.py\n# LIMIT = 30\n" in prompt
    assert prompt.endswith(PY_PREFIX)  # SmolLM2 has no FIM tokens: prefix-only
    assert response.headers["x-coderig-fim"] == "prefix-only"
    assert len(answer["debug_data"]["snippets"]) == 3


def test_the_shared_path_still_answers_openai_bodies_the_openai_way(server):
    response = post(
        server, "/v1/completions", json={"prompt": PY_PREFIX, "max_tokens": 4, "temperature": 0}
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
def test_tabby_rejects_bad_completions_in_plain_text(server, content, status, start):
    response = post(
        server, "/v1/completions", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/plain")
    assert start in response.text


def test_tabby_events_are_recorded_and_bad_events_are_a_plain_422(server):
    completion = post(
        server,
        "/v1/completions",
        json={"language": "rust", "segments": {"prefix": "fn main() {\n    let x = "}},
    ).json()
    labels = {"language": "rust", "key": "anonymous"}
    before = metric(server, "coderig_completion_events_total", event="view", **labels)
    event = {"completion_id": completion["id"], "choice_index": 0}
    assert post(server, "/v1/events", json={"type": "view", **event}).status_code == 200
    assert post(server, "/v1/events?select_kind=line", json={"type": "select", **event}).is_success
    after = metric(server, "coderig_completion_events_total", event="view", **labels)
    assert after == before + 1
    assert metric(server, "coderig_completion_acceptance_rate", **labels) > 0
    bad = post(server, "/v1/events", json={"type": "bogus", **event})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/plain")
    not_json = post(
        server, "/v1/events", content=b"{", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 400 and "Failed to parse" in not_json.text


# --- llama.cpp /infill -------------------------------------------------------------------------


def infill(server, **body) -> httpx.Response:
    return post(server, "/infill", json=body)


def test_infill_returns_content_and_llama_cpp_fields(server):
    response = infill(
        server,
        input_prefix="def fibonacci(n):\n",
        prompt="    ",
        input_suffix="\n",
        input_extra=[{"filename": "util.py", "text": "LIMIT = 30\n", "time": [1, 2]}],
        n_predict=16,
        temperature=0,
        cache_prompt=True,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert isinstance(answer["content"], str)
    assert answer["truncated"] is False and answer["stop"] is True
    assert answer["stop_type"] in {"eos", "limit", "word"}
    assert isinstance(answer["tokens_cached"], int)
    assert answer["timings"]["predicted_n"] >= 1
    assert 1 <= answer["tokens_predicted"] <= 16


def test_infill_response_fields_are_lifted_as_llama_vim_asks(server):
    fields = [
        "content",
        "timings/predicted_n",
        "timings/predicted_ms",
        "truncated",
        "tokens_cached",
    ]
    answer = infill(
        server, input_prefix="x = 1\n", prompt="y = ", n_predict=4, response_fields=fields
    ).json()
    assert set(answer) == set(fields)
    assert answer["timings/predicted_n"] >= 1


def test_infill_n_predict_0_returns_at_once_and_warms_the_cache(server):
    extra = [{"filename": "notes.py", "text": "# the ring buffer chunk\nTOTAL = 42\n"}]
    started = time.monotonic()
    warm = infill(server, input_prefix="", input_suffix="", input_extra=extra, n_predict=0)
    assert warm.status_code == 200 and warm.json()["content"] == ""
    assert time.monotonic() - started < 5
    answer = infill(
        server, input_prefix="print(", input_suffix=")\n", input_extra=extra, n_predict=4
    ).json()
    assert answer["tokens_cached"] > 0  # the extra context's tokens were sent before


def test_infill_streams_server_sent_events(server):
    body = {"input_prefix": "def add(a, b):\n", "prompt": "    ", "n_predict": 8, "stream": True}
    headers, lines = stream_lines(server, "/infill", body)
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
def test_infill_rejects_bad_bodies_in_llama_cpp_shape(server, content, contains):
    response = post(server, "/infill", content=content)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"code", "message", "type"}
    assert error["code"] == 400 and error["type"] == "invalid_request_error"
    assert contains in error["message"]


# --- Ollama ------------------------------------------------------------------------------------


def test_ollama_generate_streams_ndjson_then_a_done_line(server):
    headers, raw = stream_lines(
        server,
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


def test_ollama_generate_with_suffix_and_without_streaming(server):
    response = post(
        server,
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


def test_ollama_empty_prompt_loads_the_model_and_returns_at_once(server):
    answer = post(server, "/api/generate", json={"model": MODEL}).json()
    assert answer["done"] is True and answer["done_reason"] == "load"


def test_ollama_tags_and_show_tell_continue_the_model_takes_a_suffix(server):
    tags = httpx.get(f"{server.url}/api/tags", timeout=10).json()
    assert [m["name"] for m in tags["models"]] == [f"{MODEL}:latest"]
    assert tags["models"][0]["size"] > 0
    show = post(server, "/api/show", json={"name": MODEL}).json()
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
def test_ollama_errors_are_ollama_shaped(server, body, status, message):
    response = post(server, "/api/generate", json=body)
    assert response.status_code == status
    error = response.json()
    assert set(error) == {"error"} and isinstance(error["error"], str)
    assert message in error["error"]


def test_ollama_bad_json_and_unknown_show_model(server):
    bad = post(server, "/api/generate", content=b"{nope")
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]
    missing = post(server, "/api/show", json={"model": "llama3"})
    assert missing.status_code == 404 and "not found" in missing.json()["error"]


# --- stop rules and time budget across shapes ----------------------------------------------------


def completion(server, **extra) -> dict:
    body = {"prompt": RULE_PROMPT, "max_tokens": 48, "temperature": 0, **extra}
    response = post(server, "/v1/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_openai_stop_rules_are_opt_in_and_cut_the_generation_short(server):
    plain = completion(server)
    assert "\n\n" in plain["choices"][0]["text"].strip()  # a rule has something to cut
    saved_before = metric(server, "coderig_tokens_saved_total")
    hits_before = metric(server, "coderig_stop_rule_hits_total", language="python")
    ruled = completion(server, stop_rules=True)
    text = ruled["choices"][0]["text"]
    assert plain["choices"][0]["text"].startswith(text) and len(text) < len(
        plain["choices"][0]["text"]
    )
    assert ruled["choices"][0]["finish_reason"] == "stop"
    assert ruled["usage"]["completion_tokens"] < plain["usage"]["completion_tokens"]
    assert metric(server, "coderig_stop_rule_hits_total", language="python") == hits_before + 1
    assert metric(server, "coderig_tokens_saved_total") > saved_before
    # The language field alone turns the rules on too; stop_rules false wins. (Compared by
    # what the rule does, not by equal text: llama-server reuses a cached prompt for a repeated
    # request, and its logits are not bit-identical across batch sizes, so a repeated greedy
    # completion may drift — llama.cpp documents this for cache_prompt.)
    by_language = completion(server, language="python")
    assert by_language["choices"][0]["finish_reason"] == "stop"
    assert "\n\n" not in by_language["choices"][0]["text"].strip()
    unruled = completion(server, language="python", stop_rules=False)
    assert unruled["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]
    assert unruled["usage"]["completion_tokens"] > ruled["usage"]["completion_tokens"]


def test_openai_stream_with_stop_rules_ends_with_stop(server):
    body = {"prompt": RULE_PROMPT, "max_tokens": 48, "temperature": 0, "stream": True}
    _, lines = stream_lines(server, "/v1/completions", {**body, "stop_rules": True})
    chunks = [json.loads(line[5:]) for line in lines if line.startswith("data: {")]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    streamed = "".join(c["choices"][0]["text"] for c in chunks)
    assert streamed == completion(server, stop_rules=True)["choices"][0]["text"]


def test_time_budget_cuts_a_long_generation_with_length(server):
    body = {"prompt": "1\n2\n3\n4\n", "max_tokens": 200, "temperature": 0, "ignore_eos": True}
    budgeted = completion(server, **body, t_max_predict_ms=1)
    assert budgeted["choices"][0]["finish_reason"] == "length"
    assert budgeted["usage"]["completion_tokens"] < 200
    assert "\n" in budgeted["choices"][0]["text"]  # llama.cpp semantics: after a newline


def test_editor_shapes_apply_stop_rules_by_default(server):
    tabby = post(
        server,
        "/v1/completions",
        json={
            "language": "python",
            "segments": {"prefix": RULE_PROMPT},
            "temperature": 0,
            "max_tokens": 48,
        },  # fmt: skip
    )
    ollama = post(
        server,
        "/api/generate",
        json={
            "model": MODEL,
            "prompt": RULE_PROMPT,
            "stream": False,
            "options": {"num_predict": 48, "temperature": 0},
        },  # fmt: skip
    )
    ruled = completion(server, stop_rules=True)["choices"][0]["text"]
    assert tabby.json()["choices"][0]["text"] == ruled
    assert tabby.headers["x-coderig-stop"].startswith("rule=")
    assert ollama.json()["response"] == ruled
    assert ollama.json()["eval_count"] < 48


# --- hardening ---------------------------------------------------------------------------------


def test_unpaired_surrogates_are_a_400_in_each_shape_not_a_500(server):
    bad = '"\\ud800x"'
    headers = {"content-type": "application/json"}
    tabby = post(server, "/v1/completions", content=f'{{"segments": {{"prefix": {bad}}}}}',
                 headers=headers)  # fmt: skip
    assert tabby.status_code == 422 and "surrogate" in tabby.text
    infill = post(server, "/infill", content=f'{{"input_prefix": {bad}}}')
    assert infill.status_code == 400 and "surrogate" in infill.json()["error"]["message"]
    ollama = post(server, "/api/generate", content=f'{{"model": "{MODEL}", "prompt": {bad}}}')
    assert ollama.status_code == 400 and "surrogate" in ollama.json()["error"]


def test_an_empty_infill_is_an_empty_completion(server):
    answer = infill(server, input_prefix="", input_suffix="", n_predict=8).json()
    assert answer["content"] == "" and answer["stop"] is True
    warm = infill(server, input_prefix="", input_suffix="", n_predict=0)
    assert warm.status_code == 200


def test_the_openapi_document_stays_coderigs_own(server):
    schema = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    body = schema["paths"]["/v1/completions"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CompletionRequest"
    }
    assert not {"/infill", "/api/generate", "/v1/health", "/v1/events"} & set(schema["paths"])


@pytest.mark.parametrize("path", ["/infill", "/api/generate", "/v1/completions"])
def test_deeply_nested_json_is_a_400_on_every_editor_route(server, path):
    body = b'{"prompt": ' + b"[" * 50000 + b"]" * 50000 + b"}"
    response = httpx.post(
        f"{server.url}{path}",
        content=body,
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 400
