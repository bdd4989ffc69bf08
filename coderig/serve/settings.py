"""Everything ``coderig serve`` can be told, in one validated object."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field


class ServeSettings(BaseModel):
    model: str | None = Field(
        default=None, description="GGUF path, HF repo id, or None (embedded)."
    )
    served_model_name: str | None = None
    engine: str = "llamacpp"
    replicas: int = Field(default=1, ge=1)
    threads_per_replica: int | None = Field(default=None, ge=1)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_model_len: int = Field(default=4096, ge=16)
    max_tokens_limit: int = Field(default=2048, ge=1)
    default_max_tokens: int = Field(default=128, ge=1)
    fim_template: str | None = None
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    stall_timeout: float = Field(default=120.0, gt=0)
    startup_timeout: float = Field(default=300.0, gt=0)
    health_interval: float = Field(default=2.0, gt=0)
    health_timeout: float = Field(default=3.0, gt=0)
    health_failures: int = Field(default=3, ge=1)
    log_dir: Path | None = None
    routing: str = Field(default="prefix", pattern="^(prefix|least-busy)$")
    max_queue: int = Field(default=32, ge=0)
    max_queue_wait: float | None = Field(default=1.0, ge=0)
    fair_queuing: bool = True
    share_slots: bool = False  # each developer at most its share of a replica's slots
    pin_slots: bool = False  # name the llama-server slot (id_slot) instead of letting it pick
    # --- llama.cpp replicas (llama-server) --------------------------------------------
    llama_server: Path | None = None  # None: coderig's build, or one on PATH
    slots: int = Field(default=4, ge=1)  # requests one replica runs at once
    prompt_cache_bytes: int = Field(default=256 * 1024 * 1024, ge=0)  # --cache-ram
    cache_reuse: int = Field(default=256, ge=0)  # tokens; 0 = off
    batch_size: int = Field(default=512, ge=1)  # tokens per forward pass (prefill chunk)
    llama_server_args: list[str] = Field(default_factory=list)
    max_head_bytes: int = Field(default=64 * 1024, ge=1024)
    head_timeout: float = Field(default=10.0, gt=0)
    body_read_timeout: float = Field(default=30.0, gt=0)
    max_connections: int | None = Field(default=None, ge=1)
    api_keys_file: Path | None = None
    admin_keys_file: Path | None = None
    rate_limit_per_key: float | None = Field(default=None, gt=0)
    tokens_per_minute_per_key: int | None = Field(default=None, ge=1)
    protect_metrics: bool = False
    # Editor APIs: time budget for requests that set none (llama.cpp's t_max_predict_ms).
    editor_time_budget_ms: int | None = Field(default=None, ge=1)
    # Editor APIs: drop up to this many first lines of the code window, to an anchor line picked
    # by content, so consecutive prompts start alike (coderig.serve.editors.window); 0 = off.
    stable_window_lines: int = Field(default=16, ge=0)
    # Editor APIs: a developer's newer request replaces their older one (serve.supersede).
    supersede: bool = True
    # --- fleet (coderig.serve.fleet): vLLM, external upstreams, LoRA, scale to zero ---------
    replicas_auto: bool = False  # --replicas not given: vLLM runs one per GPU group
    upstreams: list[str] = Field(default_factory=list)
    tokenizer: str | None = None
    upstream_concurrency: int = Field(default=16, ge=1)
    loras: dict[str, str] = Field(default_factory=dict)
    # Where /v1/load_lora_adapter may load adapters from; hub ids only when allowed.
    lora_dir: Path | None = None
    allow_hub_adapters: bool = False
    gpu_memory_utilization: float = Field(default=0.90, gt=0, le=1)
    tensor_parallel_size: int = Field(default=1, ge=1)
    max_num_seqs: int = Field(default=64, ge=1)
    speculative_ngram: int = Field(default=0, ge=0)
    fp8: bool = False
    prefix_caching: bool = True
    vllm_args: list[str] = Field(default_factory=list)
    idle_shutdown: float | None = Field(default=None, gt=0)
    schedule: str | None = None

    def threads(self) -> int:
        if self.threads_per_replica:
            return self.threads_per_replica
        return max(1, (os.cpu_count() or 1) // self.replicas)
