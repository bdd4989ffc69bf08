"""API keys: 401 without the right one, revocation without restart, keys never leaked."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from coderig.serve.auth import KeyStore, RateLimiter, parse_keys
from tests.support.server import start_server

ALICE = "sk-alice-0123456789"
BOB = "sk-bob-9876543210"


def test_key_file_lines_give_names_and_unnamed_keys_get_positions():
    keys = parse_keys(["# team keys", "alice:" + ALICE, "", BOB])
    assert sorted(keys.values()) == ["alice", "key-2"]


def test_short_or_empty_keys_are_refused():
    with pytest.raises(ValueError, match="shorter than 8"):
        parse_keys(["tiny"])
    with pytest.raises(ValueError, match="empty key"):
        parse_keys(["carol:"])


def test_keystore_reads_the_environment_variable():
    store = KeyStore.from_sources(None, env={"CODERIG_API_KEYS": f"alice:{ALICE},bob:{BOB}"})
    assert store.lookup(ALICE) == "alice"
    assert store.lookup(BOB) == "bob"
    assert store.lookup("sk-nobody-000000") is None
    assert KeyStore.from_sources(None, env={}) is None


def test_rate_limiter_admits_the_burst_then_says_how_long_to_wait():
    limiter = RateLimiter(rate=2, burst=2)
    assert limiter.check("alice") == 0
    assert limiter.check("alice") == 0
    wait = limiter.check("alice")
    assert 0 < wait <= 0.5
    assert limiter.check("bob") == 0  # buckets are per key


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keys")
    keys_file = tmp / "keys.txt"
    keys_file.write_text(f"alice:{ALICE}\nbob:{BOB}\n")
    running = start_server(tmp, "--api-keys", str(keys_file), "--rate-limit-per-key", "50")
    running.keys_file = keys_file
    yield running
    running.stop()


@pytest.mark.e2e
def test_no_key_wrong_key_and_right_key(keyed_server):
    url = f"{keyed_server.url}/v1/completions"
    body = {"prompt": "a = ", "max_tokens": 2}
    missing = httpx.post(url, json=body)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_api_key"
    wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer sk-wrong-00000000"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert set(wrong.json()["error"]) == {"message", "type", "param", "code"}
    client = openai.OpenAI(base_url=keyed_server.base_url, api_key=ALICE, max_retries=0)
    assert (
        client.completions.create(model="smollm2-135m-instruct", **body).choices[0].text is not None
    )
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=keyed_server.base_url, api_key="sk-wrong-0000", max_retries=0
        ).models.list()


@pytest.mark.e2e
def test_health_ready_and_metrics_stay_open(keyed_server):
    assert httpx.get(f"{keyed_server.url}/health").status_code == 200
    assert httpx.get(f"{keyed_server.url}/ready").status_code == 200
    assert httpx.get(f"{keyed_server.url}/metrics").status_code == 200


@pytest.mark.e2e
def test_a_revoked_key_is_refused_without_a_restart(keyed_server):
    headers = {"Authorization": f"Bearer {BOB}"}
    assert httpx.get(f"{keyed_server.base_url}/models", headers=headers).status_code == 200
    keyed_server.keys_file.write_text(f"alice:{ALICE}\n")
    deadline = time.monotonic() + 10
    status = 200
    while time.monotonic() < deadline and status == 200:
        time.sleep(0.3)
        status = httpx.get(f"{keyed_server.base_url}/models", headers=headers).status_code
    assert status == 401
    alice = {"Authorization": f"Bearer {ALICE}"}
    assert httpx.get(f"{keyed_server.base_url}/models", headers=alice).status_code == 200


@pytest.mark.e2e
def test_keys_never_appear_in_logs_or_metrics_but_names_do(keyed_server):
    headers = {"Authorization": f"Bearer {ALICE}"}
    httpx.post(
        f"{keyed_server.base_url}/completions",
        json={"prompt": "b = ", "max_tokens": 2},
        headers=headers,
        timeout=60,
    )
    httpx.get(f"{keyed_server.base_url}/models", headers={"Authorization": f"Bearer {BOB}x"})
    metrics = httpx.get(f"{keyed_server.url}/metrics").text
    assert 'coderig_key_requests_total{key="alice"}' in metrics
    everything = metrics + keyed_server.output()
    for replica_log in keyed_server.log_path.parent.glob("replicas-*/*.log"):
        everything += replica_log.read_text(errors="replace")
    assert ALICE not in everything and BOB not in everything


@pytest.mark.e2e
def test_per_key_rate_limit_answers_429_with_retry_after(tmp_path):
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"alice:{ALICE}\n")
    server = start_server(tmp_path, "--api-keys", str(keys_file), "--rate-limit-per-key", "1")
    try:
        headers = {"Authorization": f"Bearer {ALICE}"}
        statuses = [
            httpx.get(f"{server.base_url}/models", headers=headers).status_code for _ in range(4)
        ]
        assert statuses[0] == 200
        assert 429 in statuses
        limited = httpx.get(f"{server.base_url}/models", headers=headers)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    finally:
        server.stop()


@pytest.mark.e2e
def test_prompts_and_completions_are_not_logged_by_default(keyed_server):
    marker = "zebra_quokka_marker_4711"
    response = httpx.post(
        f"{keyed_server.base_url}/completions",
        json={"prompt": f"# {marker}\ndef f():", "max_tokens": 4, "temperature": 0},
        headers={"Authorization": f"Bearer {ALICE}"},
        timeout=60,
    )
    completion = response.json()["choices"][0]["text"]
    logs = keyed_server.output()
    for replica_log in keyed_server.log_path.parent.glob("replicas-*/*.log"):
        logs += replica_log.read_text(errors="replace")
    assert marker not in logs
    if len(completion.strip()) > 8:
        assert completion not in logs
