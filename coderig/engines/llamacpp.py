"""llama.cpp replicas, through llama-cpp-python's own OpenAI-compatible server.

One replica = one ``python -m llama_cpp.server`` process with one llama.cpp context: it runs
one request at a time (``slots = 1``) and keeps the previous prompt's KV cache, so a request
that extends the last prompt only prefills the new tokens.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from coderig.engines.base import Launch

# llama.cpp builds for the CPU it is compiled on; a wheel built elsewhere can die with SIGILL.
REBUILD_HINT = (
    'reinstall llama-cpp-python for this CPU: CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=OFF '
    '-DGGML_BMI2=OFF" pip install --force-reinstall --no-deps llama-cpp-python'
)


@dataclass
class LlamaCppEngine:
    model_path: Path
    threads: int
    n_ctx: int = 4096
    n_batch: int = 512
    # Bytes of llama.cpp KV states kept in RAM per replica (llama-cpp-python's LlamaRAMCache),
    # keyed by token prefix: with it a replica holds several developers' prompts, not only its
    # last one. 0 = only the last prompt. Each completion then also saves its state (~23 KB per
    # token for SmolLM2-135M; tens of ms), repaid many times over when prompts share prefixes
    # (benchmarks/prefix_routing.py).
    prompt_cache_bytes: int = 0
    name: str = "llamacpp"
    slots: int = 1
    supports_min_tokens: bool = True

    def launch(self, *, index: int, port: int) -> Launch:
        argv = [
            sys.executable,
            "-m",
            "coderig.engines.llamacpp_server",
            "--model", str(self.model_path),
            "--host", "127.0.0.1",
            "--port", str(port),
            "--n_threads", str(self.threads),
            "--n_threads_batch", str(self.threads),
            "--n_ctx", str(self.n_ctx),
            "--n_batch", str(self.n_batch),
            # The default aborts a running generation whenever another request arrives.
            "--interrupt_requests", "false",
            "--disable_ping_events", "true",
            "--verbose", "false",
        ]  # fmt: skip
        if self.prompt_cache_bytes > 0:
            argv += ["--cache", "true", "--cache_type", "ram"]
            argv += ["--cache_size", str(self.prompt_cache_bytes)]
        # Not /v1/models: llama_cpp.server takes the model lock there, so it would not answer
        # while a long generation runs and the pool would kill a healthy, busy replica.
        return Launch(
            argv=argv,
            env={"OMP_NUM_THREADS": str(self.threads)},
            health_path="/coderig/stats",
        )
