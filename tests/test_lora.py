"""LoRA adapters per request on llama.cpp replicas, with a real adapter the suite builds.

The adapter (``tests/support/lora_gguf.py``) is written in llama.cpp's GGUF adapter format from
seeded numpy matrices (see that module for why not peft); these tests check llama.cpp loads it,
that it changes greedy output, and that the gateway routes a request naming it to the replica
that holds it — and only that replica.
"""

from __future__ import annotations

import gguf
import httpx
import pytest

from coderig.engines.llamacpp import LlamaCppEngine
from coderig.engines.lora import LlamaCppLoraEngine, check_gguf_adapter, parse_lora_specs
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
    )
    try:
        # repeat_penalty: llama-cpp-python's server default (its Llama() default is 1.0).
        out = llama(PROMPT, max_tokens=16, temperature=0, repeat_penalty=1.1)
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


def test_adapter_replicas_come_after_base_replicas_and_load_the_adapter(tmp_path):
    base = LlamaCppEngine(embedded_model_path(), threads=1)
    engine = LlamaCppLoraEngine.build(
        base, {"a": tmp_path / "a.gguf", "b": tmp_path / "b.gguf"}, 2, 1
    )
    assert engine.layout == [None, None, "a", "b"]
    assert "--lora_path" not in engine.launch(index=1, port=1).argv
    argv = engine.launch(index=3, port=1).argv
    assert argv[argv.index("--lora_path") + 1] == str(tmp_path / "b.gguf")
    assert engine.models_for(0, "base") == {"base"} and engine.models_for(2, "base") == {"a"}


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
def test_each_replica_serves_only_its_own_model(lora_server):
    replicas = httpx.get(f"{lora_server.url}/ready").json()["replicas"]
    assert [r["models"] for r in replicas] == [["smollm2-135m-instruct"], ["tuned"]]
    httpx.post(f"{lora_server.url}/v1/completions", json={**GREEDY, "model": "tuned"}, timeout=60)
    metrics = httpx.get(f"{lora_server.url}/metrics").text
    assert 'coderig_replica_up{replica="replica-1"} 1.0' in metrics


@pytest.mark.e2e
def test_an_unknown_model_is_still_a_404_listing_what_is_served(lora_server):
    response = httpx.post(
        f"{lora_server.url}/v1/completions", json={**GREEDY, "model": "other"}, timeout=10
    )
    assert response.status_code == 404
    assert "`tuned`" in response.json()["error"]["message"]


@pytest.mark.e2e
def test_runtime_loading_is_refused_on_llamacpp_with_the_reason(lora_server, adapter):
    response = httpx.post(
        f"{lora_server.url}/v1/load_lora_adapter",
        json={"lora_name": "late", "lora_path": str(adapter)},
        timeout=10,
    )
    assert response.status_code == 501
    error = response.json()["error"]
    assert error["code"] == "runtime_lora_unsupported" and "--lora" in error["message"]
