"""vLLM engine: the exact `vllm serve` command lines, GPU assignment, the clear failure when vLLM
or a GPU is missing, and what the gateway sends to and reads from vLLM.

vLLM cannot run on this CPU-only machine (it needs CUDA); ``test_vllm_on_a_real_gpu`` at the end
runs the whole path whenever ``nvidia-smi`` finds a GPU and vLLM is installed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from coderig.cli import main
from coderig.engines.dialect import OpenAIDialect
from coderig.engines.vllm import (
    EngineUnavailable,
    VllmEngine,
    VllmOptions,
    detect_gpus,
    max_lora_rank,
    parse_nvidia_smi,
    preflight,
    vllm_command,
)
from coderig.serve.fleet import _upstream_model
from coderig.serve.upstream import UpstreamRejected, stream_completion


def test_default_command_line_is_what_a_completion_deployment_wants():
    engine = VllmEngine("/models/qwen", "qwen-coder", command=["vllm", "serve"])
    assert engine.argv(9001) == [
        "vllm", "serve", "/models/qwen",
        "--host", "127.0.0.1",
        "--port", "9001",
        "--served-model-name", "qwen-coder",
        "--max-model-len", "4096",
        "--gpu-memory-utilization", "0.9",
        "--tensor-parallel-size", "1",
        "--max-num-seqs", "64",
        "--enable-prefix-caching",
    ]  # fmt: skip
    assert engine.launch(index=0, port=9001).argv == engine.argv(9001)
    assert engine.health_path == "/health"
    assert engine.slots == 64


def test_speculation_fp8_and_extra_args_are_added():
    options = VllmOptions(
        max_model_len=8192,
        gpu_memory_utilization=0.85,
        tensor_parallel_size=2,
        max_num_seqs=128,
        prefix_caching=False,
        ngram_speculative_tokens=5,
        fp8=True,
        extra_args=["--enforce-eager"],
    )
    argv = VllmEngine(
        "Qwen/Qwen2.5-Coder-7B", "q", options=options, command=["vllm", "serve"]
    ).argv(1)
    assert argv[argv.index("--max-model-len") + 1] == "8192"
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.85"
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
    assert "--no-enable-prefix-caching" in argv and "--enable-prefix-caching" not in argv
    spec = json.loads(argv[argv.index("--speculative-config") + 1])
    assert spec == {
        "method": "ngram",
        "num_speculative_tokens": 5,
        "prompt_lookup_max": 4,
        "prompt_lookup_min": 2,
    }
    assert argv[argv.index("--quantization") + 1] == "fp8"
    assert argv[-1] == "--enforce-eager"


def test_lora_adapters_enable_multi_lora_with_a_rank_that_fits(tmp_path):
    big = tmp_path / "sql"
    big.mkdir()
    (big / "adapter_config.json").write_text(json.dumps({"r": 24, "lora_alpha": 48}))
    loras = {"sql": str(big), "docs": "org/docs-lora"}
    engine = VllmEngine("m", "base", adapters=loras, command=["vllm", "serve"])
    argv = engine.argv(1)
    assert "--enable-lora" in argv
    assert argv[argv.index("--max-loras") + 1] == "2"
    assert argv[argv.index("--max-lora-rank") + 1] == "32"  # 24 rounded up to a vLLM rank
    start = argv.index("--lora-modules") + 1
    assert argv[start : start + 2] == [f"sql={big}", "docs=org/docs-lora"]
    assert engine.launch(index=0, port=1).env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert max_lora_rank({"remote": "org/x"}) == 16  # unknown rank: vLLM's default


def test_runtime_lora_starts_replicas_ready_for_adapters_added_later():
    engine = VllmEngine("m", "base", runtime_lora=True, command=["vllm", "serve"])
    argv = engine.argv(1)
    assert "--enable-lora" in argv and "--lora-modules" not in argv
    assert argv[argv.index("--max-loras") + 1] == "1"
    assert engine.launch(index=0, port=1).env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    engine.adapters["sql"] = "/adapters/sql"  # what /v1/load_lora_adapter records on success
    assert "sql=/adapters/sql" in engine.argv(1)  # so a restarted replica loads it too


def test_each_replica_gets_its_own_gpus():
    options = VllmOptions(tensor_parallel_size=2)
    engine = VllmEngine("m", "m", options=options, gpu_ids=["0", "1", "2", "3"])
    assert engine.launch(index=0, port=1).env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert engine.launch(index=1, port=2).env["CUDA_VISIBLE_DEVICES"] == "2,3"


def test_nvidia_smi_rows_are_parsed():
    text = "0, NVIDIA L4, 23034\n1, NVIDIA A100-SXM4-80GB, 81920\n"
    gpus = parse_nvidia_smi(text)
    assert [(g.index, g.name, g.memory_mib) for g in gpus] == [
        ("0", "NVIDIA L4", 23034),
        ("1", "NVIDIA A100-SXM4-80GB", 81920),
    ]
    assert parse_nvidia_smi("No devices were found\n") == []


needs_no_vllm = pytest.mark.skipif(
    vllm_command() is not None, reason="vLLM is installed here; the missing-vLLM path can't run"
)


@needs_no_vllm
def test_missing_vllm_is_a_clear_error():
    with pytest.raises(EngineUnavailable, match="pip install vllm"):
        preflight(1, 1)


@needs_no_vllm
def test_serve_engine_vllm_without_vllm_fails_before_starting_anything():
    result = CliRunner().invoke(
        main, ["serve", "--engine", "vllm", "--model", "Qwen/Qwen2.5-Coder-7B", "--port", "0"]
    )
    assert result.exit_code != 0
    assert "needs vLLM" in result.output and "pip install vllm" in result.output


def test_a_missing_gpu_is_a_clear_error(monkeypatch, tmp_path):
    # vLLM "installed" (an executable named vllm on PATH), but no nvidia-smi: the GPU check speaks.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "vllm").write_text("#!/bin/sh\nexit 1\n")
    (fake_bin / "vllm").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake_bin))
    with pytest.raises(EngineUnavailable, match="needs an NVIDIA GPU"):
        preflight(1, 1)


# --- what the gateway sends -----------------------------------------------------------------


def vllm_dialect(special: dict[str, int]) -> OpenAIDialect:
    return OpenAIDialect(
        model_for=_upstream_model("qwen-coder", "qwen-coder", {"sql": "/adapters/sql"}),
        special_token_id=special.get,
        native_ignore_eos=True,
    )


def test_vllm_payload_names_the_model_sends_stop_token_ids_and_asks_for_usage():
    dialect = vllm_dialect({"<|endoftext|>": 151643, "<|fim_pad|>": 151662})
    payload = {
        "prompt": "<|fim_prefix|>def f(<|fim_suffix|>)<|fim_middle|>",
        "max_tokens": 16,
        "stream": True,
        "temperature": 0,
        "stop": ["<|endoftext|>", "<|fim_pad|>", "\n\n"],
    }
    sent = dialect.adapt(payload, None)
    assert sent["model"] == "qwen-coder"
    assert sent["stop_token_ids"] == [151643, 151662]
    assert sent["stop"] == ["<|endoftext|>", "<|fim_pad|>", "\n\n"]  # harmless, kept
    assert sent["stream_options"] == {"include_usage": True}
    assert "suffix" not in sent  # vLLM rejects suffix: FIM is rendered into the prompt
    assert dialect.adapt(payload, "sql")["model"] == "sql"


def test_ignore_eos_is_sent_natively_to_vllm():
    dialect = vllm_dialect({})
    sent = dialect.adapt({"prompt": "x", "max_tokens": 8, "min_tokens": 8}, "qwen-coder")
    assert sent["ignore_eos"] is True and "min_tokens" not in sent
    partial = dialect.adapt({"prompt": "x", "max_tokens": 8, "min_tokens": 3}, None)
    assert partial["min_tokens"] == 3 and "ignore_eos" not in partial


# Recorded from vLLM's OpenAI server as its source writes them
# (vllm/entrypoints/openai/serving_completion.py, completion_stream_generator: one
# CompletionStreamResponse per step with ``usage: null`` and ``stop_reason``, then, with
# stream_options.include_usage, a final chunk with ``choices: []`` and the usage).
VLLM_STREAM = (
    'data: {"id":"cmpl-5f0c","object":"text_completion","created":1732000000,'
    '"model":"qwen-coder","choices":[{"index":0,"text":"    return","logprobs":null,'
    '"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}],'
    '"usage":null}\n\n'
    'data: {"id":"cmpl-5f0c","object":"text_completion","created":1732000000,'
    '"model":"qwen-coder","choices":[{"index":0,"text":" a + b","logprobs":null,'
    '"finish_reason":"stop","stop_reason":151643,"prompt_token_ids":null,"token_ids":null}],'
    '"usage":null}\n\n'
    'data: {"id":"cmpl-5f0c","object":"text_completion","created":1732000000,'
    '"model":"qwen-coder","choices":[],'
    '"usage":{"prompt_tokens":12,"total_tokens":16,"completion_tokens":4}}\n\n'
    "data: [DONE]\n\n"
)
# An in-stream error from vLLM versions whose ErrorResponse had no "error" object
# (create_streaming_error_response dumped ErrorResponse itself).
VLLM_OLD_ERROR = (
    'data: {"object":"error","message":"This model\'s maximum context length is 4096 tokens.",'
    '"type":"BadRequestError","param":null,"code":400}\n\ndata: [DONE]\n\n'
)


def replay(body: str) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def collect(body: str) -> list[dict]:
    async with replay(body) as client:
        return [
            c
            async for c in stream_completion(
                client, "http://vllm", {"prompt": "x"}, stall_timeout=5
            )
        ]


def test_recorded_vllm_stream_gives_text_finish_and_usage():
    import asyncio

    chunks = asyncio.run(collect(VLLM_STREAM))
    texts = [c["choices"][0]["text"] for c in chunks if c["choices"]]
    assert "".join(texts) == "    return a + b"
    assert chunks[1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == {"prompt_tokens": 12, "total_tokens": 16, "completion_tokens": 4}


def test_older_vllm_in_stream_error_is_an_error_not_an_empty_completion():
    import asyncio

    with pytest.raises(UpstreamRejected) as caught:
        asyncio.run(collect(VLLM_OLD_ERROR))
    assert caught.value.status == 400
    assert "maximum context length" in caught.value.message


# --- the real thing, when this machine has a GPU ----------------------------------------------

HAS_GPU = bool(shutil.which("nvidia-smi")) and bool(detect_gpus())


@pytest.mark.skipif(
    not (HAS_GPU and vllm_command()),
    reason="needs an NVIDIA GPU (nvidia-smi) and vLLM installed; this machine has "
    + ("no vLLM" if HAS_GPU else "no GPU"),
)
def test_vllm_on_a_real_gpu(tmp_path):
    """coderig serve --engine vllm with a small HF model: completion, FIM, usage.

    The model is ``$CODERIG_VLLM_TEST_MODEL`` (a checkpoint directory or HF id), by default
    Qwen/Qwen2.5-Coder-0.5B; it must be on disk or in the HF cache (no download in tests).
    """
    from huggingface_hub import try_to_load_from_cache

    from tests.support.server import start_server

    model = os.environ.get("CODERIG_VLLM_TEST_MODEL", "Qwen/Qwen2.5-Coder-0.5B")
    if not Path(model).is_dir() and not isinstance(
        try_to_load_from_cache(model, "config.json"), str
    ):
        pytest.skip(f"{model} is not in the local Hugging Face cache (set CODERIG_VLLM_TEST_MODEL)")
    server = start_server(
        tmp_path,
        "--engine", "vllm", "--model", model, "--replicas", "1",
        "--max-model-len", "2048", "--startup-timeout", "15m",
    )  # fmt: skip
    try:
        body = {"prompt": "def add(a, b):\n", "max_tokens": 16, "temperature": 0}
        response = httpx.post(f"{server.url}/v1/completions", json=body, timeout=120)
        assert response.status_code == 200, response.text
        out = response.json()
        assert out["choices"][0]["text"]
        assert out["usage"]["completion_tokens"] > 0
        fim = {"prompt": "def add(a, b):\n    return ", "suffix": "\n", "max_tokens": 8}
        assert httpx.post(f"{server.url}/v1/completions", json=fim, timeout=120).status_code == 200
    finally:
        server.stop()
