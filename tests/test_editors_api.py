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


def test_infill_n_predict_0_returns_at_once_and_warms_the_cache(server):
    extra = [{"filename": "notes.py", "text": "# the ring buffer chunk\nTOTAL = 42\n"}]
    computed = metric(server, "coderig_prompt_tokens_total")
    started = time.monotonic()
    warm = infill(server, input_prefix="", input_suffix="", input_extra=extra, n_predict=0)
    assert warm.status_code == 200 and warm.json()["content"] == ""
    assert time.monotonic() - started < 5
    # the warm-up runs in the background; an editor's next request comes seconds later, by
    # when it has finished (one sent while it still runs lands in another slot)
    while metric(server, "coderig_prompt_tokens_total") == computed:
        assert time.monotonic() - started < 30, "the warm-up never ran"
        time.sleep(0.05)
    answer = infill(
        server, input_prefix="print(", input_suffix=")\n", input_extra=extra, n_predict=4
    ).json()
    assert answer["tokens_cached"] > 0  # the extra context's tokens were sent before


def test_infill_reports_the_tokens_the_engine_found_cached(server):
    body = dict(input_prefix="def mean(xs):\n    total = sum(xs)\n", input_suffix="\n")
    body.update(n_predict=4, stop_rules=False)  # the engine's last event reaches the gateway
    infill(server, **body)
    answer = infill(server, **body).json()
    assert 0 < answer["tokens_cached"] == answer["timings"]["cache_n"]
    assert answer["tokens_cached"] < answer["tokens_evaluated"]
    assert answer["timings"]["prompt_n"] == answer["tokens_evaluated"] - answer["tokens_cached"]


# --- Ollama ------------------------------------------------------------------------------------


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
    # Each shape's answer is cut by a rule, as the OpenAI route's is when asked. (Not compared
    # text for text: llama.cpp's greedy text for one prompt varies with where its KV cells sit
    # in the unified cache and whether it was cached, so three requests may differ.)
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
    ruled = post(
        server,
        "/v1/completions",
        json={"prompt": RULE_PROMPT, "max_tokens": 48, "temperature": 0, "stop_rules": True},
    )
    for answer in (tabby, ollama, ruled):
        assert answer.status_code == 200, answer.text
    for answer in (tabby, ollama):  # the editor shapes say which rule
        assert answer.headers["x-coderig-stop"].startswith("rule=")
    assert ollama.json()["eval_count"] < 48
    assert ruled.json()["usage"]["completion_tokens"] < 48
    assert ruled.json()["choices"][0]["finish_reason"] == "stop"


# --- hardening ---------------------------------------------------------------------------------


def test_an_empty_infill_is_an_empty_completion(server):
    answer = infill(server, input_prefix="", input_suffix="", n_predict=8).json()
    assert answer["content"] == "" and answer["stop"] is True
    warm = infill(server, input_prefix="", input_suffix="", n_predict=0)
    assert warm.status_code == 200
