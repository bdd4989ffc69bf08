"""Runtime adapter loading is an admin act, from the directory the operator named only.

The policy (``allowed_adapter_source``) is checked on real files and symlinks; the routes end to
end through ``coderig serve --engine external`` in front of a stand-in for vLLM's LoRA admin API
(vLLM needs a GPU), which requires its own API key as ``vllm serve --api-key`` does.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from coderig.serve.lora_admin import allowed_adapter_source
from tests.support.server import free_port, start_server

ROOT = "sk-root-5555555555"
ALICE = "sk-alice-0123456789"
UPSTREAM_KEY = "upstream-secret-0123456789"


@pytest.fixture
def lora_dir(tmp_path):
    adapters = tmp_path / "adapters"
    (adapters / "sql").mkdir(parents=True)
    (adapters / "sql" / "adapter_config.json").write_text("{}")
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.gguf").write_text("not yours")
    (adapters / "escape").symlink_to(outside)  # a symlink that leads out
    (adapters / "inner").symlink_to(adapters / "sql")  # one that stays inside
    return adapters


def test_an_adapter_inside_the_directory_is_sent_as_its_resolved_path(lora_dir):
    assert allowed_adapter_source("sql", lora_dir) == str(lora_dir.resolve() / "sql")
    assert allowed_adapter_source(str(lora_dir / "sql"), lora_dir) == str(lora_dir / "sql")
    assert allowed_adapter_source("inner", lora_dir) == str(lora_dir / "sql")


@pytest.mark.parametrize(
    "path",
    ["../private/secret.gguf", "sql/../../private", "escape/secret.gguf", "escape", "/etc/passwd"],
)
def test_paths_that_resolve_outside_the_directory_are_refused(lora_dir, path):
    with pytest.raises(ValueError, match="outside the adapter directory"):
        allowed_adapter_source(path, lora_dir)


def test_hub_ids_only_when_allowed(lora_dir):
    with pytest.raises(ValueError, match="--allow-hub-adapters"):
        allowed_adapter_source("org/sql-lora", lora_dir)
    assert allowed_adapter_source("org/sql-lora", lora_dir, allow_hub=True) == "org/sql-lora"
    assert allowed_adapter_source("org/sql-lora", None, allow_hub=True) == "org/sql-lora"
    # an allowed hub id is still no way out of the directory
    with pytest.raises(ValueError, match="outside"):
        allowed_adapter_source("../private", lora_dir, allow_hub=True)


def test_without_a_directory_nothing_local_loads(tmp_path):
    with pytest.raises(ValueError, match="--lora-dir"):
        allowed_adapter_source(str(tmp_path), None)


@pytest.fixture
def fake_vllm(tmp_path):
    port = free_port()
    support = Path(__file__).parent / "support" / "fake_vllm.py"
    process = subprocess.Popen(
        [sys.executable, str(support), "--port", str(port)],
        env={"VLLM_API_KEY": UPSTREAM_KEY, "PATH": "/usr/bin:/bin"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/seen", timeout=1)
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(10)


@pytest.mark.e2e
def test_an_admin_loads_an_adapter_from_the_directory_and_nothing_else(
    tmp_path, lora_dir, fake_vllm
):
    server = start_server(
        tmp_path,
        "--engine", "external", "--upstream", fake_vllm, "--lora-dir", str(lora_dir),
        env={
            "CODERIG_ADMIN_KEYS": f"root:{ROOT}",
            "CODERIG_API_KEYS": f"alice:{ALICE}",
            "CODERIG_UPSTREAM_API_KEY": UPSTREAM_KEY,
        },
    )  # fmt: skip
    try:
        load = f"{server.url}/v1/load_lora_adapter"
        admin = {"Authorization": f"Bearer {ROOT}"}
        refused = httpx.post(
            load,
            json={"lora_name": "x", "lora_path": "../private/secret.gguf"},
            headers=admin,
        )
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["code"] == "adapter_not_allowed" and error["param"] == "lora_path"
        assert "outside the adapter directory" in error["message"]
        developer = httpx.post(
            load,
            json={"lora_name": "sql", "lora_path": "sql"},
            headers={"Authorization": f"Bearer {ALICE}"},
        )
        assert developer.status_code == 403
        loaded = httpx.post(load, json={"lora_name": "sql", "lora_path": "sql"}, headers=admin)
        assert loaded.status_code == 200, loaded.text
        models = httpx.get(f"{server.url}/v1/models", headers=admin).json()["data"]
        assert "sql" in [m["id"] for m in models]
        seen = httpx.get(f"{fake_vllm}/seen").json()
        # the upstream saw only the allowed load, as an absolute path inside the directory
        assert seen == [
            {"load": {"lora_name": "sql", "lora_path": str(lora_dir.resolve() / "sql")}}
        ]
        unloaded = httpx.post(
            f"{server.url}/v1/unload_lora_adapter", json={"lora_name": "sql"}, headers=admin
        )
        assert unloaded.status_code == 200
        paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
        assert "/v1/load_lora_adapter" in paths  # documented where the engine can load
    finally:
        server.stop()


@pytest.mark.e2e
def test_without_an_admin_key_the_admin_routes_do_not_exist(tmp_path, lora_dir, fake_vllm):
    server = start_server(
        tmp_path,
        "--engine", "external", "--upstream", fake_vllm, "--lora-dir", str(lora_dir),
        env={"CODERIG_UPSTREAM_API_KEY": UPSTREAM_KEY},
    )  # fmt: skip
    try:
        response = httpx.post(
            f"{server.url}/v1/load_lora_adapter", json={"lora_name": "sql", "lora_path": "sql"}
        )
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found_error"
        paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
        assert "/v1/load_lora_adapter" not in paths
    finally:
        server.stop()
