"""API keys: 401 without the right one, revocation without restart, keys never leaked; admin
keys for admin routes (403 for a developer key); replicas only the gateway can reach."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest

from coderig.serve.auth import Authenticator, KeyStore, RateLimiter, TokenBudget, parse_keys
from coderig.serve.errors import OpenAIError
from tests.support.server import start_server

ALICE = "sk-alice-0123456789"
BOB = "sk-bob-9876543210"
ROOT = "sk-root-5555555555"
OPS = "sk-ops-7777777777"


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


def _raises(status: int, call) -> OpenAIError:
    with pytest.raises(OpenAIError) as caught:
        call()
    assert caught.value.status == status
    return caught.value


def test_admin_routes_take_an_admin_key_and_refuse_a_developer_key_with_403():
    auth = Authenticator(
        KeyStore.from_sources(None, env={"CODERIG_API_KEYS": f"alice:{ALICE}"}),
        admin_keys=KeyStore.from_sources(
            None, env={"CODERIG_ADMIN_KEYS": f"root:{ROOT}"}, env_var="CODERIG_ADMIN_KEYS"
        ),
    )
    assert auth.authenticate_admin(f"Bearer {ROOT}").admin
    refused = _raises(403, lambda: auth.authenticate_admin(f"Bearer {ALICE}"))
    assert "admin key" in refused.message and "alice" in refused.message
    _raises(401, lambda: auth.authenticate_admin(None))
    _raises(401, lambda: auth.authenticate_admin("Bearer sk-nobody-00000000"))
    # an admin key is a developer key too; a developer key is never an admin one
    assert auth.authenticate(f"Bearer {ROOT}").name == "root"
    assert not auth.authenticate(f"Bearer {ALICE}").admin


def test_an_open_gateway_with_an_admin_key_still_guards_the_admin_routes():
    admin = KeyStore.from_sources(
        None, env={"CODERIG_ADMIN_KEYS": ROOT}, env_var="CODERIG_ADMIN_KEYS"
    )
    auth = Authenticator(None, admin_keys=admin)
    assert auth.authenticate(None).name == "anonymous"  # completions stay open
    assert auth.authenticate("Bearer whatever-an-editor-sends").name == "anonymous"
    _raises(401, lambda: auth.authenticate_admin(None))
    assert auth.authenticate_admin(f"Bearer {ROOT}").admin


def test_without_an_admin_key_there_is_no_admin_at_all():
    auth = Authenticator(KeyStore.from_sources(None, env={"CODERIG_API_KEYS": ALICE}))
    assert not auth.has_admin
    _raises(404, lambda: auth.authenticate_admin(f"Bearer {ALICE}"))


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keys")
    keys_file = tmp / "keys.txt"
    keys_file.write_text(f"alice:{ALICE}\nbob:{BOB}\n")
    admin_file = tmp / "admin.txt"
    admin_file.write_text(f"root:{ROOT}\n")
    running = start_server(
        tmp,
        "--api-keys", str(keys_file),
        "--admin-keys", str(admin_file),
        "--rate-limit-per-key", "50",
        env={"CODERIG_ADMIN_KEYS": f"ops:{OPS}"},  # both sources count
    )  # fmt: skip
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


@pytest.mark.e2e
def test_admin_routes_answer_403_to_a_developer_and_let_an_admin_through(keyed_server):
    url = f"{keyed_server.url}/v1/load_lora_adapter"
    body = {"lora_name": "sql", "lora_path": "sql.gguf"}
    developer = httpx.post(url, json=body, headers={"Authorization": f"Bearer {ALICE}"})
    assert developer.status_code == 403
    assert developer.json()["error"]["type"] == "permission_error"
    assert httpx.post(url, json=body).status_code == 401
    for key in (ROOT, OPS):  # from the file and from the environment
        admin = httpx.post(url, json=body, headers={"Authorization": f"Bearer {key}"})
        # past the key check: llama-server loads adapters only at start, and says so
        assert admin.status_code == 501
        assert admin.json()["error"]["code"] == "runtime_lora_unsupported"


def _replica_secret(server) -> tuple[str, dict]:
    replica = server.ready_info()["replicas"][0]
    environ = Path(f"/proc/{replica['pid']}/environ").read_bytes().split(b"\0")
    variables = dict(v.decode().partition("=")[::2] for v in environ if b"=" in v)
    return variables["LLAMA_API_KEY"], replica


@pytest.mark.e2e
def test_a_replica_answers_only_the_gateway(keyed_server):
    secret, replica = _replica_secret(keyed_server)
    assert len(secret) >= 32
    body = {"prompt": "x = ", "max_tokens": 2}
    direct = httpx.post(f"{replica['url']}/v1/completions", json=body, timeout=30)
    assert direct.status_code == 401
    for stolen in (ALICE, ROOT):  # a gateway key is no replica key
        headers = {"Authorization": f"Bearer {stolen}"}
        assert httpx.get(f"{replica['url']}/slots", headers=headers).status_code == 401
    assert httpx.get(f"{replica['url']}/metrics").status_code == 401
    # the gateway itself gets through: completions, and the engine metrics it folds in
    through = httpx.post(
        f"{keyed_server.base_url}/completions",
        json=body,
        headers={"Authorization": f"Bearer {ALICE}"},
        timeout=60,
    )
    assert through.status_code == 200
    assert 'replica="replica-0"' in httpx.get(f"{keyed_server.url}/metrics").text


@pytest.mark.e2e
def test_the_replica_secret_is_in_no_argv_log_or_metric(keyed_server):
    secret, replica = _replica_secret(keyed_server)
    everything = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout
    assert "llama-server" in everything  # ps did see the replica's command line
    everything += httpx.get(f"{keyed_server.url}/metrics").text + keyed_server.output()
    for replica_log in keyed_server.log_path.parent.glob("replicas-*/*.log"):
        everything += replica_log.read_text(errors="replace")
    assert secret not in everything
    # and the gateway's own keys are not handed down to the engine
    environ = Path(f"/proc/{replica['pid']}/environ").read_bytes()
    assert b"CODERIG_ADMIN_KEYS" not in environ and OPS.encode() not in environ


def test_token_budget_admits_until_spent_then_says_when_to_come_back():
    now = [0.0]
    budget = TokenBudget(600, clock=lambda: now[0])  # 600 tokens/minute = 10 a second
    assert budget.check("alice") == 0
    budget.charge("alice", 900)  # one long request may overdraw
    wait = budget.check("alice")
    assert wait == pytest.approx(30.1)  # 300 in debt + 1 token, at 10 a second
    now[0] = 29.0
    assert budget.check("alice") > 0
    now[0] = 31.0
    assert budget.check("alice") == 0
    assert budget.check("bob") == 0  # buckets are per key


def test_a_keys_own_tpm_overrides_the_server_wide_budget():
    store = KeyStore.from_sources(
        None, env={"CODERIG_API_KEYS": f"alice:{ALICE} tpm=100,bob:{BOB} tpm=0"}
    )
    auth = Authenticator(store, tokens_per_minute=10_000)
    assert auth.budget.limit("alice") == 100
    assert auth.budget.limit("bob") is None  # 0: unlimited
    assert auth.budget.limit("carol") == 10_000
    auth.budget.charge("alice", 500)
    limited = _raises(429, lambda: auth.authenticate(f"Bearer {ALICE}"))
    assert limited.code == "token_budget_exceeded" and int(limited.headers["Retry-After"]) >= 1
    auth.budget.charge("bob", 10**9)
    assert auth.authenticate(f"Bearer {BOB}").name == "bob"
    with pytest.raises(ValueError, match="known limits"):
        parse_keys([f"alice:{ALICE} rpm=5"])


@pytest.mark.e2e
def test_token_budget_per_key_is_enforced_and_usage_counted_by_name(tmp_path):
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"alice:{ALICE}\nbob:{BOB} tpm=0\n")
    server = start_server(
        tmp_path, "--api-keys", str(keys_file), "--tokens-per-minute-per-key", "20"
    )
    try:
        body = {"prompt": "def add(a, b):\n    return", "max_tokens": 16, "ignore_eos": True}
        alice = {"Authorization": f"Bearer {ALICE}"}
        first = httpx.post(f"{server.base_url}/completions", json=body, headers=alice, timeout=60)
        assert first.status_code == 200
        used = first.json()["usage"]["total_tokens"]
        assert used > 20  # this one request spent the minute's budget
        second = httpx.post(f"{server.base_url}/completions", json=body, headers=alice, timeout=60)
        assert second.status_code == 429
        assert second.json()["error"]["code"] == "token_budget_exceeded"
        assert int(second.headers["retry-after"]) >= 1
        bob = {"Authorization": f"Bearer {BOB}"}
        for _ in range(2):  # tpm=0 on bob's line: no budget
            ok = httpx.post(f"{server.base_url}/completions", json=body, headers=bob, timeout=60)
            assert ok.status_code == 200
        metrics = httpx.get(f"{server.url}/metrics").text
        assert f'coderig_key_tokens_total{{key="alice"}} {float(used)}' in metrics
    finally:
        server.stop()
