"""Everything ``coderig serve`` can be told, in one typed object validated in one call:
:class:`ServeSettings` (the flags as the CLI hands them over, their defaults and cross-checks; no
secrets), and :class:`ConfigError`, which assembling a gateway raises when the world disagrees,
with a message a user can act on. See docs/architecture.md, section 6 (startup).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from coderig.units import parse_duration

__all__ = ["ConfigError", "Duration", "DurationOrOff", "ServeSettings", "describe_validation_error"]


class ConfigError(Exception):
    """The gateway cannot be assembled from these settings; the message says what to change."""


def _seconds(value: Any) -> Any:
    """``1.5s``/``250ms``/``2m``/a number -> float seconds."""
    return parse_duration(value) if isinstance(value, str) else value


def _seconds_or_off(value: Any) -> Any:
    """As :func:`_seconds`, and ``off``/``none`` -> None (no limit)."""
    if isinstance(value, str) and value.strip().lower() in ("off", "none"):
        return None
    return _seconds(value)


#: A duration in float seconds; text is read as :func:`coderig.units.parse_duration` reads it.
Duration = Annotated[float, BeforeValidator(_seconds)]
#: A duration that may be switched off: None, ``off`` or ``none`` mean no limit.
DurationOrOff = Annotated[float | None, BeforeValidator(_seconds_or_off)]
#: A wait that may be switched off: ``off`` or ``none`` mean 0 (no wait).
DurationOffIsZero = Annotated[float, BeforeValidator(lambda v: _seconds_or_off(v) or 0.0)]


def _also(flag: str, field: str) -> AliasChoices:
    """Accept a value under the flag's name (``max_body_size``) or the field's own."""
    return AliasChoices(flag, field)


class ServeSettings(BaseModel):
    """The gateway's whole configuration: flags, defaults and their cross-checks."""

    # extra="forbid": a misspelt or forgotten option is an error here, not silently dropped.
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        default=None, description="GGUF path, HF repo id, or None (embedded)."
    )
    served_model_name: str | None = None
    engine: Literal["llamacpp", "vllm", "external"] = "llamacpp"
    replicas: int = Field(default=1, ge=1)
    threads_per_replica: int | None = Field(default=None, ge=1)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_model_len: int = Field(default=4096, ge=16)
    max_tokens_limit: int = Field(default=2048, ge=1)
    default_max_tokens: int = Field(default=128, ge=1)
    fim_template: str | None = None
    max_body_bytes: ByteSize = Field(
        default=ByteSize(2 * 1024 * 1024),
        ge=1024,
        validation_alias=_also("max_body_size", "max_body_bytes"),
    )
    stall_timeout: Duration = Field(default=120.0, gt=0)
    startup_timeout: Duration = Field(default=300.0, gt=0)
    # --health-check INTERVAL,TIMEOUT,FAILURES fills these three (_split_health_check).
    health_interval: Duration = Field(default=2.0, gt=0)
    health_timeout: Duration = Field(default=3.0, gt=0)
    health_failures: int = Field(default=3, ge=1)
    log_dir: Path | None = None
    routing: Literal["prefix", "least-busy"] = "prefix"
    max_queue: int = Field(default=32, ge=0)
    max_queue_wait: DurationOrOff = Field(default=1.0, ge=0)  # None: queue up to max_queue
    fair_queuing: bool = True
    share_slots: bool = True  # each developer at most its share of a replica's slots
    pin_slots: bool = False  # name the llama-server slot (id_slot) instead of letting it pick
    # A request with more than cold_prompt_tokens of its prompt not cached on its replica waits
    # up to cold_hold for the replica to run nothing (serve.generate). None: the engine's own
    # default (1 s for llama-server, none for vLLM and external servers); 0 or "off": never.
    cold_hold: DurationOffIsZero | None = Field(default=None, ge=0)
    cold_prompt_tokens: int = Field(default=64, ge=0)
    # --- llama.cpp replicas (llama-server) --------------------------------------------
    llama_server: Path | None = None  # None: coderig's build, or one on PATH
    slots: int = Field(default=4, ge=1)  # requests one replica runs at once
    prompt_cache_bytes: ByteSize = Field(  # llama-server's --cache-ram
        default=ByteSize(256 * 1024 * 1024),
        ge=0,
        validation_alias=_also("prompt_cache", "prompt_cache_bytes"),
    )
    cache_reuse: int = Field(default=256, ge=0)  # tokens; 0 = off
    batch_size: int = Field(default=512, ge=1)  # tokens per forward pass (prefill chunk)
    llama_server_args: list[str] = Field(default_factory=list)
    # --- the HTTP server ----------------------------------------------------------------
    max_head_bytes: ByteSize = Field(
        default=ByteSize(64 * 1024),
        ge=1024,
        validation_alias=_also("max_header_size", "max_head_bytes"),
    )
    head_timeout: Duration = Field(
        default=10.0, gt=0, validation_alias=_also("header_timeout", "head_timeout")
    )
    body_read_timeout: Duration = Field(
        default=30.0, gt=0, validation_alias=_also("body_timeout", "body_read_timeout")
    )
    max_connections: int | None = Field(default=None, ge=1)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = True
    # --- keys and limits ------------------------------------------------------------------
    api_keys_file: Path | None = None
    admin_keys_file: Path | None = None
    rate_limit_per_key: float | None = Field(default=None, gt=0)
    tokens_per_minute_per_key: int | None = Field(default=None, ge=1)
    protect_metrics: bool = False
    # --- editor APIs ------------------------------------------------------------------------
    # Time budget for requests that set none (llama.cpp's t_max_predict_ms); see the _ms property.
    editor_time_budget: DurationOrOff = Field(default=None, gt=0)
    # Drop up to this many first lines of the code window, to an anchor line picked by content,
    # so consecutive prompts start alike (coderig.serve.editors.window); 0 = off.
    stable_window_lines: int = Field(default=16, ge=0)
    # "developer": each developer's anchor kept while in reach; "content": winnowing alone.
    stable_window_anchor: Literal["developer", "content"] = "developer"
    # At most this share of the window's lines is dropped.
    stable_window_max_drop: float = Field(default=0.5, gt=0, le=0.75)
    # A developer's newer request replaces their older one (serve.supersede).
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
    idle_shutdown: DurationOrOff = Field(default=None, gt=0)
    schedule: str | None = None

    # --- reading flags as they come --------------------------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _split_health_check(cls, data: Any) -> Any:
        """``health_check="2s,3s,3"`` (the flag) -> interval, timeout and failures."""
        if not isinstance(data, dict) or "health_check" not in data:
            return data
        data = dict(data)
        text = data.pop("health_check")
        parts = [part.strip() for part in str(text).split(",")]
        if len(parts) != 3:
            raise ValueError(f"--health-check {text!r}: use INTERVAL,TIMEOUT,FAILURES like 2s,3s,3")
        data["health_interval"] = parse_duration(parts[0])
        data["health_timeout"] = parse_duration(parts[1])
        data["health_failures"] = int(parts[2])
        return data

    @field_validator("loras", mode="before")
    @classmethod
    def _read_lora_specs(cls, value: Any) -> Any:
        """``("sql=./sql.gguf", ...)`` (repeated ``--lora``) -> ``{"sql": "./sql.gguf"}``."""
        if isinstance(value, list | tuple):
            from coderig.engines.lora import parse_lora_specs

            return parse_lora_specs(value)
        return value

    @field_validator("upstreams")
    @classmethod
    def _normalize_upstreams(cls, urls: list[str]) -> list[str]:
        """``gpu1:8000`` and ``http://gpu1:8000/v1`` both mean ``http://gpu1:8000``."""
        from coderig.engines.external import normalize_upstream

        return [normalize_upstream(url) for url in urls]

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, text: str | None) -> str | None:
        """A schedule that cannot be read fails at startup, not at 8 am."""
        if text:
            from coderig.on_hours import Schedule

            Schedule.parse(text)
        return text

    @model_validator(mode="after")
    def _check_engine_flags(self) -> ServeSettings:
        """Flags that only make sense with some engines."""
        if self.engine == "vllm":
            if self.upstreams:
                raise ValueError("--upstream is for --engine external")
            if not self.model:
                raise ValueError(
                    "--engine vllm needs --model: a Hugging Face id or checkpoint directory, "
                    "e.g. --model Qwen/Qwen2.5-Coder-7B"
                )
        if self.engine == "external":
            if not self.upstreams:
                raise ValueError("--engine external needs at least one --upstream URL")
            if self.loras:
                raise ValueError(
                    "--lora starts adapters on coderig's own replicas; with --engine external, "
                    "load them on the upstream (e.g. vllm serve --lora-modules): the gateway "
                    "serves every model the upstream lists"
                )
            if self.idle_shutdown or self.schedule:
                raise ValueError(
                    "--idle-shutdown/--schedule stop replicas coderig started; "
                    "external upstreams are not coderig's to stop"
                )
        return self

    # --- derived values ----------------------------------------------------------------------

    @property
    def editor_time_budget_ms(self) -> int | None:
        """The editor time budget in whole milliseconds (at least 1), as llama.cpp counts it."""
        if self.editor_time_budget is None:
            return None
        return max(1, round(self.editor_time_budget * 1000))

    def threads(self) -> int:
        if self.threads_per_replica:
            return self.threads_per_replica
        return max(1, (os.cpu_count() or 1) // self.replicas)


def describe_validation_error(exc: ValidationError, flags: dict[str, str] | None = None) -> str:
    """One line per problem, named by its flag: ``--max-body-size: Input should be ...``.

    ``flags`` maps a field (or accepted alias) to the flag a user typed; without an entry the
    flag is the name with dashes. A message that already names its flag is kept as it is.
    """
    flags = flags or {}
    lines = []
    for error in exc.errors(include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        loc = error["loc"]
        if loc and not message.startswith("--"):
            name = str(loc[0])
            flag = flags.get(name, "--" + name.replace("_", "-"))
            message = f"{flag}: {message}"
        lines.append(message)
    return "\n".join(lines)
