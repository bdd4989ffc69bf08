"""``coderig serve`` beyond one CPU: assembling the gateway for vLLM replicas, external
upstreams, LoRA adapters and scale to zero (the flags are in ``coderig.serve.fleet_options``).
``coderig.serve.assembly`` calls in at a few delimited places; problems are ``ConfigError``s.
The checks that need no outside world (``--upstream`` without ``--engine external``...) are
``ServeSettings``' own.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from coderig.engines.dialect import OpenAIDialect
from coderig.engines.lora import check_gguf_adapter
from coderig.models import ModelNotFound, resolve_model
from coderig.on_hours import Schedule
from coderig.serve.assembly import check_context, new_gateway, new_pool
from coderig.serve.fim import FimConfigError, choose_template
from coderig.serve.settings import ConfigError, ServeSettings

# --- llama.cpp with LoRA adapters (hooks in assembly.build_gateway) -----------------------


def llamacpp_adapters(settings: ServeSettings) -> dict[str, Path]:
    """``--lora`` adapters as checked GGUF files, by served name (every replica loads all)."""
    try:
        return {name: check_gguf_adapter(name, path) for name, path in settings.loras.items()}
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def attach_fleet(gateway, settings: ServeSettings, console: Console | None = None):
    """Adapters (names, per-replica routing) and the scale-to-zero controller, on any gateway."""
    engine = gateway.pool.engine
    if engine.name == "llamacpp" and engine.adapters:
        gateway.adapters = {name: str(path) for name, path in engine.adapters.items()}
        if console is not None:
            for name in engine.adapters:
                console.print(f"  LoRA adapter [cyan]{name}[/]: on every replica, per request")
    if settings.idle_shutdown or settings.schedule:
        from coderig.serve.idle import IdleController

        schedule = Schedule.parse(settings.schedule) if settings.schedule else None
        gateway.idle = IdleController(
            gateway.pool,
            idle_after=settings.idle_shutdown,
            schedule=schedule,
            metrics=gateway.metrics,
        )
        gateway.generator.before_route = gateway.idle.ensure_warm
        if console is not None:
            idle = gateway.idle.idle_after
            console.print(
                "  scale to zero: after "
                + (f"{idle:g}s" if idle else "never")
                + " without requests"
                + (f", warm during {schedule.describe()}" if schedule else "")
            )
    return gateway


# --- vLLM and external engines ---------------------------------------------------------------


def build_remote_gateway(settings: ServeSettings, console: Console | None = None):
    """The gateway for ``--engine vllm`` or ``--engine external`` (not started)."""

    if settings.engine == "vllm":
        engine, name, tokenizer, replicas, urls = _vllm_engine(settings, console)
        adapters = dict(settings.loras)
    else:
        engine, name, tokenizer, replicas, urls, adapters = _external_engine(settings)
    has_vocabulary = tokenizer.__class__.__name__ != "ApproxTokenizer"
    check_context(settings, getattr(tokenizer, "context_length", None))
    upstream = engine.model if settings.engine == "external" else name
    try:
        fim = choose_template(
            model_name=upstream,
            is_special_token=tokenizer.is_special_token if has_vocabulary else None,
            override=settings.fim_template,
        )
    except FimConfigError as exc:
        raise ConfigError(str(exc)) from exc
    engine.dialect = OpenAIDialect(
        model_for=_upstream_model(name, upstream, adapters),
        special_token_id=special_token_id(tokenizer) if has_vocabulary else None,
        native_ignore_eos=settings.engine == "vllm",
    )
    pool = new_pool(settings, engine, replicas, urls)
    if console is not None:
        console.print(f"[bold]coderig[/] model [cyan]{name}[/] on {settings.engine}")
        console.print(f"  fill-in-the-middle: {fim.id if fim else 'none (prefix only)'}")
        if urls:
            console.print(f"  upstreams: {', '.join(urls)}")
        else:
            console.print(f"  {replicas} vLLM replica(s), logs in {pool.log_dir}")
        if not has_vocabulary:
            console.print(
                "  [yellow]no tokenizer[/]: prompt tokens estimated, usage from the upstream, "
                "no chat template (pass --tokenizer for exact counts and chat)"
            )
        for adapter in adapters:
            console.print(f"  also serving [cyan]{adapter}[/]")
    gateway = new_gateway(settings, name, tokenizer, fim, pool)
    gateway.adapters = adapters
    return attach_fleet(gateway, settings, console)


def _upstream_model(served: str, upstream: str, adapters: dict[str, str]):
    """Served name -> the ``model`` field the upstream expects."""

    def model_for(requested: str | None) -> str:
        if requested is None or requested == served:
            return upstream
        return requested if requested in adapters else upstream

    return model_for


def special_token_id(tokenizer):
    """A function: stop string -> its id when it is one special token, else None."""
    direct = getattr(tokenizer, "token_id", None)
    if direct is not None:
        return direct

    def token_id(text: str) -> int | None:
        ids = tokenizer.encode(text)
        return ids[0] if len(ids) == 1 and tokenizer.is_special_token(text) else None

    return token_id


def _vllm_engine(settings: ServeSettings, console: Console | None):
    from coderig.engines.vllm import (
        EngineUnavailable,
        VllmEngine,
        VllmOptions,
        preflight,
        vllm_command,
    )
    from coderig.serve.remote_tokenizers import HFTokenizer

    tp = settings.tensor_parallel_size
    try:
        gpus = preflight(1 if settings.replicas_auto else settings.replicas, tp)
    except EngineUnavailable as exc:
        raise ConfigError(str(exc)) from exc
    replicas = max(1, len(gpus) // tp) if settings.replicas_auto else settings.replicas
    try:
        resolved = resolve_model(settings.model, name=settings.served_model_name)
    except ModelNotFound as exc:
        raise ConfigError(str(exc)) from exc
    if resolved.is_gguf:
        raise ConfigError(
            f"{resolved.path}: --engine vllm serves Hugging Face checkpoints, not GGUF files "
            "(use the llama.cpp engine for .gguf)"
        )
    try:
        tokenizer = HFTokenizer(resolved.path)
    except (ImportError, OSError, ValueError) as exc:
        raise ConfigError(f"{resolved.path}: cannot load its tokenizer ({exc})") from exc
    options = VllmOptions(
        max_model_len=settings.max_model_len,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        tensor_parallel_size=tp,
        max_num_seqs=settings.max_num_seqs,
        prefix_caching=settings.prefix_caching,
        ngram_speculative_tokens=settings.speculative_ngram,
        fp8=settings.fp8,
        extra_args=list(settings.vllm_args),
    )
    engine = VllmEngine(
        model=str(resolved.path),
        served_model_name=resolved.name,
        options=options,
        adapters=dict(settings.loras),
        gpu_ids=[g.index for g in gpus],
        command=vllm_command() or ["vllm", "serve"],
        # runtime loading costs vLLM a LoRA-enabled start: only when adapters are expected
        runtime_lora=bool(settings.loras or settings.lora_dir or settings.allow_hub_adapters),
    )
    if console is not None:
        console.print(f"  GPUs: {', '.join(f'{g.index}: {g.name}' for g in gpus)}")
    return engine, resolved.name, tokenizer, replicas, None


def _external_engine(settings: ServeSettings):
    from coderig.engines.external import ExternalEngine, UpstreamUnreachable, list_upstream_models

    urls = list(settings.upstreams)  # normalized by ServeSettings
    if settings.model:
        ids = [settings.model]
    else:
        try:
            ids = list_upstream_models(urls)
        except UpstreamUnreachable as exc:
            raise ConfigError(
                f"cannot ask the upstream which model it serves ({exc}); start it first, or "
                "pass --model with the name it expects"
            ) from exc
    upstream_model = ids[0]
    name = settings.served_model_name or upstream_model
    adapters = {other: "upstream" for other in ids[1:] if other != name}
    tokenizer = _external_tokenizer(settings.tokenizer)
    engine = ExternalEngine(model=upstream_model, slots=settings.upstream_concurrency)
    return engine, name, tokenizer, len(urls), urls, adapters


def _external_tokenizer(spec: str | None):
    from coderig.serve.remote_tokenizers import ApproxTokenizer, HFTokenizer
    from coderig.serve.tokenizer import GGUFTokenizer

    if not spec:
        return ApproxTokenizer()
    path = Path(spec).expanduser()
    try:
        if path.suffix == ".gguf":
            return GGUFTokenizer(path)
        return HFTokenizer(path if path.exists() else spec)
    except (ImportError, OSError, ValueError) as exc:
        raise ConfigError(f"--tokenizer {spec}: cannot load it ({exc})") from exc
