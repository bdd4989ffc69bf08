"""vLLM replicas on NVIDIA GPUs: ``vllm serve`` processes, one per GPU (or per GPU group with
tensor parallelism), each batching many requests at once.

The command line carries what a code-completion deployment wants and nothing else:

* ``--max-model-len`` (4096 by default): completions need a few thousand tokens of context, and a
  short context leaves more KV cache for concurrent requests;
* prefix caching on: consecutive keystrokes resend almost the same prompt;
* optional n-gram speculative decoding (``--speculative-config '{"method": "ngram", ...}'``):
  code repeats identifiers from the prompt, which n-gram lookup proposes for free;
* optional fp8 weights (``--quantization fp8``), and ``--gpu-memory-utilization``;
* multi-LoRA when adapters are given (``--enable-lora --lora-modules name=path``, runtime
  loading allowed through ``VLLM_ALLOW_RUNTIME_LORA_UPDATING``).

vLLM itself is not a dependency of coderig (it brings CUDA torch); :func:`preflight` says in one
line what is missing before anything is started.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from coderig.engines.base import Dialect, Launch

# vLLM accepts these LoRA ranks for --max-lora-rank.
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


class EngineUnavailable(Exception):
    """The engine cannot run on this machine; the message says what to install or change."""


@dataclass(frozen=True)
class Gpu:
    index: str
    name: str
    memory_mib: int


def detect_gpus() -> list[Gpu]:
    """NVIDIA GPUs as ``nvidia-smi`` lists them, restricted to ``CUDA_VISIBLE_DEVICES``."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = parse_nvidia_smi(out)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        wanted = [v.strip() for v in visible.split(",") if v.strip()]
        gpus = [g for g in gpus if g.index in wanted]
    return gpus


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """Rows of ``index, name, memory.total`` (csv, no header, no units)."""
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        try:
            memory = int(float(parts[-1]))
        except ValueError:
            memory = 0
        gpus.append(Gpu(parts[0], ",".join(parts[1:-1]), memory))
    return gpus


def vllm_command() -> list[str] | None:
    """How to run ``vllm serve`` here: the console script, else the module; None if absent."""
    script = shutil.which("vllm")
    if script:
        return [script, "serve"]
    if importlib.util.find_spec("vllm") is not None:
        return [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve"]
    return None


def preflight(replicas: int, tensor_parallel_size: int) -> list[Gpu]:
    """Check vLLM and enough GPUs exist; raise :class:`EngineUnavailable` saying what is missing."""
    if vllm_command() is None:
        raise EngineUnavailable(
            "--engine vllm needs vLLM, which is not installed here: pip install vllm "
            "(on a machine with an NVIDIA GPU and CUDA drivers). On CPU, use the default "
            "llama.cpp engine with a .gguf model."
        )
    gpus = detect_gpus()
    if not gpus:
        raise EngineUnavailable(
            "--engine vllm needs an NVIDIA GPU, and none was found (nvidia-smi is missing or "
            "lists no GPU; check CUDA_VISIBLE_DEVICES). On CPU, use the default llama.cpp engine."
        )
    needed = replicas * tensor_parallel_size
    if needed > len(gpus):
        raise EngineUnavailable(
            f"{replicas} replica(s) x --tensor-parallel-size {tensor_parallel_size} need "
            f"{needed} GPUs; this machine has {len(gpus)}"
        )
    return gpus


def lora_rank(path: str) -> int | None:
    """The rank ``r`` in a PEFT adapter's ``adapter_config.json``, when the adapter is local."""
    config = Path(path) / "adapter_config.json"
    try:
        return int(json.loads(config.read_text())["r"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def max_lora_rank(loras: dict[str, str], default: int = 16) -> int:
    """The smallest ``--max-lora-rank`` vLLM accepts that fits every local adapter."""
    ranks = [r for r in (lora_rank(p) for p in loras.values()) if r]
    needed = max(ranks, default=default)
    return next((r for r in LORA_RANKS if r >= needed), LORA_RANKS[-1])


@dataclass
class VllmOptions:
    max_model_len: int = 4096
    gpu_memory_utilization: float = 0.90
    tensor_parallel_size: int = 1
    # Sequences one replica batches at once; also the gateway's slots per replica.
    max_num_seqs: int = 64
    prefix_caching: bool = True
    # Tokens proposed per step by n-gram lookup in the prompt; 0 turns speculation off.
    ngram_speculative_tokens: int = 0
    ngram_lookup_max: int = 4
    fp8: bool = False
    extra_args: list[str] = field(default_factory=list)


@dataclass
class VllmEngine:
    model: str  # local checkpoint directory or Hugging Face repo id
    served_model_name: str
    options: VllmOptions = field(default_factory=VllmOptions)
    adapters: dict[str, str] = field(default_factory=dict)  # served adapter name -> path
    gpu_ids: list[str] = field(default_factory=list)  # what the replicas may use, in order
    command: list[str] = field(default_factory=lambda: ["vllm", "serve"])
    # Start with LoRA on, so adapters can also be added at run time (/v1/load_lora_adapter).
    runtime_lora: bool = False
    name: str = "vllm"
    health_path: str = "/health"
    slot_routing: bool = False
    cold_hold: float = 0.0
    per_request_lora: bool = True  # multi-LoRA: adapters batched together, chosen per request
    # vLLM then requires it on /v1/* (its /health and /metrics stay open).
    secret_env: str | None = "VLLM_API_KEY"
    dialect: Dialect | None = None  # set by the gateway: it needs the tokenizer

    @property
    def slots(self) -> int:
        return self.options.max_num_seqs

    def devices_for(self, index: int) -> list[str]:
        """GPUs replica ``index`` gets: consecutive groups of ``tensor_parallel_size``."""
        tp = self.options.tensor_parallel_size
        return self.gpu_ids[index * tp : (index + 1) * tp]

    def argv(self, port: int) -> list[str]:
        o = self.options
        argv = [
            *self.command, self.model,
            "--host", "127.0.0.1",
            "--port", str(port),
            "--served-model-name", self.served_model_name,
            "--max-model-len", str(o.max_model_len),
            "--gpu-memory-utilization", f"{o.gpu_memory_utilization:g}",
            "--tensor-parallel-size", str(o.tensor_parallel_size),
            "--max-num-seqs", str(o.max_num_seqs),
        ]  # fmt: skip
        argv.append("--enable-prefix-caching" if o.prefix_caching else "--no-enable-prefix-caching")
        if o.ngram_speculative_tokens > 0:
            config = {
                "method": "ngram",
                "num_speculative_tokens": o.ngram_speculative_tokens,
                "prompt_lookup_max": o.ngram_lookup_max,
                "prompt_lookup_min": 2,
            }
            argv += ["--speculative-config", json.dumps(config, separators=(",", ":"))]
        if o.fp8:
            argv += ["--quantization", "fp8"]
        if self.adapters or self.runtime_lora:
            argv += [
                "--enable-lora",
                "--max-loras", str(max(1, len(self.adapters))),
                "--max-lora-rank", str(max_lora_rank(self.adapters)),
            ]  # fmt: skip
        if self.adapters:
            argv += ["--lora-modules", *(f"{name}={path}" for name, path in self.adapters.items())]
        return argv + list(o.extra_args)

    def launch(self, *, index: int, port: int) -> Launch:
        lora = self.adapters or self.runtime_lora
        env = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"} if lora else {}
        devices = self.devices_for(index)
        if devices:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
        return Launch(argv=self.argv(port), env=env)
