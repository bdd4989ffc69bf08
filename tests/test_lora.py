"""LoRA adapters per request on llama.cpp replicas, with a real adapter the suite builds.

The adapter (``tests/support/lora_gguf.py``) is written in llama.cpp's GGUF adapter format from
seeded numpy matrices (see that module for why not peft); these tests check llama.cpp loads it,
that it changes greedy output, and that llama-server applies it to exactly the requests that
name it, on any replica (every replica loads every adapter, unapplied).
"""

from __future__ import annotations

from pathlib import Path

import gguf
import httpx
import pytest

from coderig.engines.llamacpp import LlamaServerEngine
from coderig.engines.lora import check_gguf_adapter, parse_lora_specs
from coderig.models import embedded_model_path
from tests.support.lora_gguf import make_lora_adapter
from tests.support.server import start_server

PROMPT = "def fibonacci(n):\n"
GREEDY = {"prompt": PROMPT, "max_tokens": 16, "temperature": 0}


@pytest.fixture(scope="session")
def adapter(tmp_path_factory):
    return make_lora_adapter(embedded_model_path(), tmp_path_factory.mktemp("lora") / "tuned.gguf")


def greedy_in_process(lora_path=None) -> str:
    from llama_cpp import Llama

    llama = Llama(
        str(embedded_model_path()),
        lora_path=str(lora_path) if lora_path else None,
        n_ctx=512,
        n_threads=1,
        verbose=False,
        flash_attn=True,  # llama-server's default on CPU (-fa auto); numerics follow it
    )
    try:
        # repeat_penalty: llama-server's default, as llama.cpp's own (1.0: off).
        out = llama(PROMPT, max_tokens=16, temperature=0, repeat_penalty=1.0)
        return out["choices"][0]["text"]
    finally:
        llama.close()


def test_lora_specs_are_parsed_and_bad_ones_say_why():
    assert parse_lora_specs(["sql=./a.gguf", "docs = /b.gguf"]) == {
        "sql": "./a.gguf",
        "docs": "/b.gguf",
    }
    for bad, why in [("sql", "NAME=PATH"), ("=x", "NAME=PATH"), ("a b=x", "usable")]:
        with pytest.raises(ValueError, match=why):
            parse_lora_specs([bad])
    with pytest.raises(ValueError, match="twice"):
        parse_lora_specs(["a=x", "a=y"])


def test_a_llamacpp_adapter_must_be_a_gguf_file(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        check_gguf_adapter("a", str(tmp_path / "missing.gguf"))
    peft = tmp_path / "adapter_model.safetensors"
    peft.write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match="convert_lora_to_gguf"):
        check_gguf_adapter("a", str(peft))


def test_the_built_adapter_has_llamacpps_adapter_metadata(adapter):
    reader = gguf.GGUFReader(str(adapter))
    assert reader.get_field(gguf.Keys.General.TYPE).contents() == "adapter"
    assert reader.get_field(gguf.Keys.Adapter.TYPE).contents() == "lora"
    assert reader.get_field(gguf.Keys.Adapter.LORA_ALPHA).contents() == 16.0
    names = {t.name for t in reader.tensors}
    assert "blk.0.attn_q.weight.lora_a" in names and "blk.0.attn_q.weight.lora_b" in names


def test_every_replica_loads_every_adapter_unapplied_and_requests_choose_one(tmp_path):
    adapters = {"a": tmp_path / "a.gguf", "b": tmp_path / "b.gguf"}
    engine = LlamaServerEngine(Path("llama-server"), embedded_model_path(), 1, adapters=adapters)
    for index in (0, 1):
        argv = engine.launch(index=index, port=1).argv
        loaded = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--lora"]
        assert loaded == [str(tmp_path / "a.gguf"), str(tmp_path / "b.gguf")]
        assert "--lora-init-without-apply" in argv
    payload = {"prompt": "x", "max_tokens": 4}
    assert engine.dialect.adapt(payload, "b")["lora"] == [
        {"id": 0, "scale": 0.0},
        {"id": 1, "scale": 1.0},
    ]
    base = engine.dialect.adapt(payload, None)["lora"]  # the base model: none applied
    assert [a["scale"] for a in base] == [0.0, 0.0]
    assert engine.per_request_lora and not engine.runtime_lora


@pytest.mark.e2e
def test_llamacpp_loads_the_adapter_and_it_changes_greedy_output(adapter):
    assert greedy_in_process(adapter) != greedy_in_process()


@pytest.fixture(scope="module")
def lora_server(adapter, tmp_path_factory):
    server = start_server(
        tmp_path_factory.mktemp("lora-serve"),
        "--threads-per-replica", "1",
        "--lora", f"tuned={adapter}",
    )  # fmt: skip
    yield server
    server.stop()


@pytest.mark.e2e
def test_models_lists_the_base_model_and_the_adapter(lora_server, adapter):
    models = httpx.get(f"{lora_server.url}/v1/models").json()["data"]
    assert [m["id"] for m in models] == ["smollm2-135m-instruct", "tuned"]
    assert models[1]["parent"] == "smollm2-135m-instruct"
    assert models[1]["root"] == str(adapter)


@pytest.mark.e2e
def test_a_request_naming_the_adapter_is_served_with_it(lora_server, adapter):
    tuned = httpx.post(
        f"{lora_server.url}/v1/completions", json={**GREEDY, "model": "tuned"}, timeout=60
    )
    base = httpx.post(f"{lora_server.url}/v1/completions", json=GREEDY, timeout=60)
    assert tuned.status_code == 200 and base.status_code == 200
    assert tuned.json()["model"] == "tuned"
    tuned_text = tuned.json()["choices"][0]["text"]
    assert tuned_text != base.json()["choices"][0]["text"]
    assert tuned_text == greedy_in_process(adapter)  # the same adapter, applied by llama.cpp


@pytest.mark.e2e
def test_one_replica_serves_the_base_model_and_the_adapter(lora_server):
    replicas = httpx.get(f"{lora_server.url}/ready").json()["replicas"]
    assert len(replicas) == 1
    for model in ("tuned", "smollm2-135m-instruct", "tuned"):
        response = httpx.post(
            f"{lora_server.url}/v1/completions", json={**GREEDY, "model": model}, timeout=60
        )
        assert response.status_code == 200 and response.json()["model"] == model


@pytest.mark.e2e
def test_an_unknown_model_is_still_a_404_listing_what_is_served(lora_server):
    response = httpx.post(
        f"{lora_server.url}/v1/completions", json={**GREEDY, "model": "other"}, timeout=10
    )
    assert response.status_code == 404
    assert "`tuned`" in response.json()["error"]["message"]


@pytest.mark.e2e
def test_runtime_loading_routes_are_absent_without_an_admin_key(lora_server, adapter):
    # (with an admin key, llama.cpp answers 501 with the reason: test_serve_auth)
    response = httpx.post(
        f"{lora_server.url}/v1/load_lora_adapter",
        json={"lora_name": "late", "lora_path": str(adapter)},
        timeout=10,
    )
    assert response.status_code == 404
