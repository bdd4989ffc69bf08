"""``--engine external``: the gateway in front of a server the user already runs. A real
llama.cpp ``llama-server``, started on its own, stands in for "an existing
llama-server/vLLM/Ollama"; everything here is real HTTP on loopback.
"""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from coderig.engines.external import normalize_upstream
from coderig.models import embedded_model_path
from tests.support.replica import start_replica
from tests.support.server import start_server

pytestmark = pytest.mark.e2e

GREEDY = {"prompt": "def fibonacci(n):\n", "max_tokens": 12, "temperature": 0}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    replica = start_replica(tmp_path_factory.mktemp("upstream"))
    yield replica
    replica.stop()


ROOT = "sk-root-5555555555"


@pytest.fixture(scope="module")
def gateway(upstream, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("external")
    (tmp / "adapters" / "sql").mkdir(parents=True)
    server = start_server(
        tmp,
        "--engine", "external", "--upstream", upstream.url, "--lora-dir", str(tmp / "adapters"),
        env={"CODERIG_ADMIN_KEYS": f"root:{ROOT}"},
    )  # fmt: skip
    yield server
    server.stop()


def test_upstream_urls_are_normalized():
    assert normalize_upstream("gpu1:8000") == "http://gpu1:8000"
    assert normalize_upstream("http://gpu1:8000/v1/") == "http://gpu1:8000"
    assert normalize_upstream("https://llm.example/api/v1") == "https://llm.example/api"
    with pytest.raises(ValueError):
        normalize_upstream("ftp://x")


def test_the_gateway_serves_the_model_the_upstream_names(gateway):
    models = httpx.get(f"{gateway.url}/v1/models").json()["data"]
    assert [m["id"] for m in models] == ["smollm"]


def test_completion_through_the_gateway_equals_the_upstreams_own(upstream, gateway):
    direct = httpx.post(f"{upstream.url}/v1/completions", json=GREEDY, timeout=60).json()
    via = httpx.post(f"{gateway.url}/v1/completions", json=GREEDY, timeout=60)
    assert via.status_code == 200, via.text
    body = via.json()
    assert body["object"] == "text_completion" and body["model"] == "smollm"
    assert body["choices"][0]["text"] == direct["choices"][0]["text"]
    # No tokenizer: the prompt count is the gateway's estimate, or the upstream's own usage
    # when it reports one; never more than the real count (it would refuse valid prompts).
    assert 0 < body["usage"]["prompt_tokens"] <= direct["usage"]["prompt_tokens"]
    assert body["usage"]["completion_tokens"] == direct["usage"]["completion_tokens"]


def test_openai_client_streams_with_usage(gateway):
    client = openai.OpenAI(base_url=gateway.base_url, api_key="unused")
    stream = client.completions.create(
        model="smollm", stream=True, stream_options={"include_usage": True}, **GREEDY
    )
    chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_unknown_model_is_404_and_chat_needs_a_tokenizer(gateway):
    wrong = httpx.post(f"{gateway.url}/v1/completions", json={**GREEDY, "model": "gpt-4"})
    assert wrong.status_code == 404 and "smollm" in wrong.json()["error"]["message"]
    chat = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
    )
    assert chat.status_code == 400 and chat.json()["error"]["code"] == "chat_unsupported"


def test_with_the_models_tokenizer_chat_works_and_counts_are_exact(upstream, tmp_path):
    server = start_server(
        tmp_path,
        "--engine", "external", "--upstream", upstream.url,
        "--tokenizer", str(embedded_model_path()), "--served-model-name", "coder",
    )  # fmt: skip
    try:
        models = httpx.get(f"{server.url}/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["coder"]
        chat = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={
                "model": "coder",
                "messages": [{"role": "user", "content": "Say hi"}],
                "max_tokens": 6,
                "temperature": 0,
            },
            timeout=60,
        )
        assert chat.status_code == 200, chat.text
        assert chat.json()["choices"][0]["message"]["content"]
        too_long = {"model": "coder", "prompt": "x " * 5000, "max_tokens": 8}
        rejected = httpx.post(f"{server.url}/v1/completions", json=too_long, timeout=30)
        assert rejected.status_code == 400  # counted by the gateway, before the upstream
        assert rejected.json()["error"]["code"] == "context_length_exceeded"
    finally:
        server.stop()


def test_an_upstream_that_goes_away_gets_503_and_is_used_again_when_back(tmp_path):
    upstream = start_replica(tmp_path)
    server = start_server(tmp_path, "--engine", "external", "--upstream", upstream.url)
    try:
        assert (
            httpx.post(f"{server.url}/v1/completions", json=GREEDY, timeout=60).status_code == 200
        )
        upstream.stop()
        down = httpx.post(f"{server.url}/v1/completions", json=GREEDY, timeout=60)
        assert down.status_code == 503
        assert down.headers["retry-after"]
        # Stay down past the health checks' give-up point (3 failures, 2 s apart), so the
        # gateway has declared the upstream lost, not just unhealthy.
        deadline = time.monotonic() + 30
        while httpx.get(f"{server.url}/ready").status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(7)
        upstream = start_replica(tmp_path, port=upstream.port)
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline:
            status = httpx.post(f"{server.url}/v1/completions", json=GREEDY, timeout=60).status_code
            if status == 200:
                break
            time.sleep(0.5)
        assert status == 200
    finally:
        server.stop()
        upstream.stop()


def test_runtime_lora_loading_is_forwarded_and_an_upstream_refusal_reported(gateway):
    # llama-server has no /v1/load_lora_adapter (vLLM does): the real refusal comes back.
    response = httpx.post(
        f"{gateway.url}/v1/load_lora_adapter",
        json={"lora_name": "sql", "lora_path": "sql"},
        headers={"Authorization": f"Bearer {ROOT}"},
        timeout=30,
    )
    assert response.status_code == 502
    assert "replica-0: 404" in response.json()["error"]["message"]
    models = httpx.get(f"{gateway.url}/v1/models").json()["data"]
    assert [m["id"] for m in models] == ["smollm"]  # not served: the upstream did not load it


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--engine", "external"], "needs at least one --upstream"),
        (["--engine", "external", "--upstream", "ftp://x"], "expected http://host:port"),
        (
            ["--engine", "external", "--upstream", "http://127.0.0.1:1"],
            "cannot ask the upstream which model it serves",
        ),
        (
            ["--engine", "external", "--upstream", "http://127.0.0.1:1", "--lora", "a=b.gguf"],
            "load them on the upstream",
        ),
        (
            [
                "--engine", "external", "--upstream", "http://127.0.0.1:1",
                "--model", "m", "--idle-shutdown", "5m",
            ],
            "not coderig's to stop",
        ),
        (["--schedule", "someday 9-5"], "unknown day"),
    ],
)  # fmt: skip
def test_misconfigurations_are_one_clear_line(args, message):
    from click.testing import CliRunner

    from coderig.cli import main

    result = CliRunner().invoke(main, ["serve", "--port", "0", *args])
    assert result.exit_code != 0
    assert message in result.output


def test_a_request_that_reaches_no_upstream_is_sent_to_another(upstream, tmp_path):
    doomed = start_replica(tmp_path)
    server = start_server(
        tmp_path,
        "--engine", "external", "--upstream", doomed.url, "--upstream", upstream.url,
        "--routing", "least-busy",
    )  # fmt: skip
    try:
        doomed.stop()  # still "ready" to the gateway until its health checks fail
        statuses = [
            httpx.post(f"{server.url}/v1/completions", json=GREEDY, timeout=60).status_code
            for _ in range(4)
        ]
        assert statuses == [200] * 4  # least-busy alternates: two went to the dead upstream
        metrics = httpx.get(f"{server.url}/metrics").text
        retried = [
            line
            for line in metrics.splitlines()
            if line.startswith("coderig_routed_requests_total")
        ]
        assert any('reason="retry"' in line and not line.endswith(" 0.0") for line in retried)
    finally:
        server.stop()
        doomed.stop()
