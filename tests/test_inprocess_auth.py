"""API keys and admin keys against the real app in process (fake upstream): 401 without the
right key, 403 for a developer key on an admin route, revocation without a restart, key names
(never keys) in metrics. ``test_serve_auth.py`` keeps the e2e tests that need real processes
(logs, replica secrets, rate limits under load)."""

from __future__ import annotations

import time

import openai
import pytest

from tests.support.inprocess import MODEL, in_process_settings, openai_client, serve_in_process

ALICE = "sk-alice-0123456789"
BOB = "sk-bob-9876543210"
ROOT = "sk-root-5555555555"
OPS = "sk-ops-7777777777"
BODY = {"prompt": "a = ", "max_tokens": 2}


@pytest.fixture(scope="module")
def keyed(fake_upstream_url, tmp_path_factory):
    """A gateway with developer keys (alice, bob) and admin keys (root from a file, ops from
    CODERIG_ADMIN_KEYS), as ``--api-keys``/``--admin-keys`` and the environment give them."""
    tmp = tmp_path_factory.mktemp("keys")
    keys_file = tmp / "keys.txt"
    keys_file.write_text(f"alice:{ALICE}\nbob:{BOB}\n")
    admin_file = tmp / "admin.txt"
    admin_file.write_text(f"root:{ROOT}\n")
    (tmp / "adapters" / "sql").mkdir(parents=True)  # what an admin may load: --lora-dir
    settings = in_process_settings(
        fake_upstream_url,
        tmp,
        api_keys_file=keys_file,
        admin_keys_file=admin_file,
        lora_dir=tmp / "adapters",
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CODERIG_ADMIN_KEYS", f"ops:{OPS}")  # both sources count
        env.delenv("CODERIG_API_KEYS", raising=False)
        with serve_in_process(settings) as client:
            client.keys_file = keys_file
            yield client


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_no_key_wrong_key_and_right_key(keyed):
    missing = keyed.post("/v1/completions", json=BODY)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_api_key"
    wrong = keyed.post("/v1/completions", json=BODY, headers=bearer("sk-wrong-00000000"))
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert set(wrong.json()["error"]) == {"message", "type", "param", "code"}
    assert openai_client(keyed, ALICE).completions.create(model=MODEL, **BODY).choices[0].text
    with pytest.raises(openai.AuthenticationError):
        openai_client(keyed, "sk-wrong-0000").models.list()


def test_every_editor_route_wants_a_key_too(keyed):
    assert keyed.post("/infill", json={"input_prefix": "x"}).status_code == 401
    assert keyed.post("/api/generate", json={"model": MODEL, "prompt": "x"}).status_code == 401
    tabby = {"segments": {"prefix": "x = "}}
    assert keyed.post("/v1/completions", json=tabby).status_code == 401
    assert keyed.post("/v1/completions", json=tabby, headers=bearer(BOB)).status_code == 200


def test_health_ready_and_metrics_stay_open(keyed):
    assert keyed.get("/health").status_code == 200
    assert keyed.get("/ready").status_code == 200
    assert keyed.get("/metrics").status_code == 200


def test_admin_routes_answer_403_to_a_developer_and_let_an_admin_through(keyed):
    body = {"lora_name": "sql", "lora_path": "sql"}
    developer = keyed.post("/v1/load_lora_adapter", json=body, headers=bearer(ALICE))
    assert developer.status_code == 403
    assert developer.json()["error"]["type"] == "permission_error"
    assert keyed.post("/v1/load_lora_adapter", json=body).status_code == 401
    for key in (ROOT, OPS):  # from the file and from the environment
        admin = keyed.post("/v1/load_lora_adapter", json=body, headers=bearer(key))
        # past the key check: forwarded to the upstream, which has no such route (404), and
        # the gateway reports the upstream's refusal
        assert admin.status_code == 502
        assert "replica-0: 404" in admin.json()["error"]["message"]


def test_key_names_not_keys_are_in_the_metrics(keyed):
    keyed.post("/v1/completions", json=BODY, headers=bearer(ALICE))
    keyed.get("/v1/models", headers=bearer(f"{BOB}x"))
    metrics = keyed.get("/metrics").text
    assert 'coderig_key_requests_total{key="alice"}' in metrics
    assert ALICE not in metrics and BOB not in metrics


def test_a_revoked_key_is_refused_without_a_restart(keyed):
    assert keyed.get("/v1/models", headers=bearer(BOB)).status_code == 200
    keyed.keys_file.write_text(f"alice:{ALICE}\n")
    deadline = time.monotonic() + 10
    status = 200
    while time.monotonic() < deadline and status == 200:
        time.sleep(0.1)
        status = keyed.get("/v1/models", headers=bearer(BOB)).status_code
    assert status == 401
    assert keyed.get("/v1/models", headers=bearer(ALICE)).status_code == 200
