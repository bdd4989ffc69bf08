"""llama.cpp replicas: llama.cpp's own ``llama-server``, one process per replica.

A replica runs ``slots`` requests at once (continuous batching: one forward pass decodes a token
for every running request), keeps each slot's prompt in its KV cache, reuses cached chunks after
the window moved (``--cache-reuse``), and keeps prompts that left their slot in RAM
(``--cache-ram``), so a developer's next request prefills only what changed — even when the
previous one was cancelled mid-prefill. llama-server picks the slot whose cached prompt
shares the most with the request; with ``--pin-slots`` the gateway names it (``id_slot``).

LoRA adapters are loaded into every replica, unapplied (``--lora-init-without-apply``), and
chosen per request (``"lora": [{"id": i, "scale": 1}]``): one model copy serves them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from coderig.engines.base import Launch

# llama.cpp builds for the CPU it is compiled on; a binary built elsewhere can die with SIGILL.
REBUILD_HINT = (
    "rebuild llama-server for this CPU with `coderig engine build --force` (portable flags), "
    "or pass --llama-server PATH"
)


@dataclass
class LlamaServerDialect:
    """What the gateway's upstream payload needs for llama-server."""

    adapters: list[str] = field(default_factory=list)  # served names, in --lora order

    def adapt(self, payload: dict, model: str | None) -> dict:
        payload = dict(payload)
        payload["stream_options"] = {"include_usage": True}  # usage, with cached prompt tokens
        # llama-server has ignore_eos but no min_tokens: "exactly max_tokens" is the one use.
        min_tokens = payload.pop("min_tokens", None)
        if min_tokens is not None and min_tokens >= payload.get("max_tokens", 0):
            payload["ignore_eos"] = True
        if self.adapters:  # every scale, always: a request naming none would get the defaults
            payload["lora"] = [
                {"id": i, "scale": 1.0 if name == model else 0.0}
                for i, name in enumerate(self.adapters)
            ]
        return payload


@dataclass
class LlamaServerEngine:
    binary: Path
    model_path: Path
    threads: int
    # Tokens each slot holds: the gateway's --max-model-len.
    n_ctx: int = 4096
    slots: int = 4
    n_batch: int = 512
    # MiB of RAM for prompts that left their slot (llama-server's --cache-ram); 0 = none.
    prompt_cache_mib: int = 256
    # Smallest cached chunk llama-server reuses by shifting it in the KV cache; 0 = off.
    cache_reuse: int = 256
    adapters: dict[str, Path] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    name: str = "llamacpp"
    health_path: str = "/health"  # 503 while loading, 200 once it can serve, busy or not
    slot_routing: bool = True
    cold_hold: float = 1.0
    per_request_lora: bool = True
    runtime_lora: bool = False
    # llama-server then answers 401 without it; /health stays open (the pool probes it).
    secret_env: str | None = "LLAMA_API_KEY"
    dialect: LlamaServerDialect = field(init=False)

    def __post_init__(self) -> None:
        self.dialect = LlamaServerDialect(adapters=list(self.adapters))

    def launch(self, *, index: int, port: int) -> Launch:
        argv = [
            str(self.binary),
            "--model", str(self.model_path),
            "--host", "127.0.0.1",
            "--port", str(port),
            "--threads", str(self.threads),
            "--threads-batch", str(self.threads),
            "--parallel", str(self.slots),
            # one pool of slots x n_ctx tokens, each slot capped at n_ctx
            "--ctx-size", str(self.n_ctx * self.slots),
            "--kv-unified",
            "--kv-unified-per-slot", str(self.n_ctx),
            "--batch-size", str(self.n_batch),
            "--cache-ram", str(self.prompt_cache_mib),
            "--cache-reuse", str(self.cache_reuse),
            "--metrics",
            "--slots",
            "--no-webui",
            "--log-verbosity", "2",
        ]  # fmt: skip
        for adapter in self.adapters.values():
            argv += ["--lora", str(adapter)]
        if self.adapters:
            argv.append("--lora-init-without-apply")
        argv += self.extra_args
        return Launch(argv=argv)
