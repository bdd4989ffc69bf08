"""The ``coderig serve`` flags for engines, LoRA adapters and scale to zero (applied to
``serve`` with one decorator). Each becomes the ``ServeSettings`` field of its name, which reads
and checks it (``--lora NAME=PATH`` specs, ``--schedule`` text, engine-specific flags)."""

from __future__ import annotations

from pathlib import Path

import click

from coderig.cli_types import Duration, with_options

ENGINES = ("llamacpp", "vllm", "external")


def fleet_options(command):
    """The ``serve`` flags for engines, adapters and scale to zero."""
    options = [
        click.option(
            "--engine",
            type=click.Choice(ENGINES),
            default="llamacpp",
            show_default=True,
            help="llamacpp: CPU replicas from a .gguf. vllm: `vllm serve` replicas on NVIDIA "
            "GPUs. external: servers you already run (--upstream).",
        ),
        click.option(
            "--upstream",
            "upstreams",
            multiple=True,
            metavar="URL",
            help="With --engine external: an OpenAI-compatible server (vLLM, llama-server, "
            "Ollama), e.g. http://gpu1:8000. Repeat for several.",
        ),
        click.option(
            "--tokenizer",
            default=None,
            help="With --engine external: the model's tokenizer (.gguf file, HF checkpoint "
            "directory or cached HF id) for exact token counts, FIM checks and chat. "
            "Default: estimated counts, FIM from the model name, no chat.",
        ),
        click.option(
            "--upstream-concurrency",
            type=click.IntRange(1),
            default=16,
            show_default=True,
            help="With --engine external: requests sent to one upstream at once.",
        ),
        click.option(
            "--lora",
            "loras",
            multiple=True,
            metavar="NAME=PATH",
            help="Serve a LoRA adapter as model NAME (repeatable). llama.cpp: a GGUF adapter; "
            "vLLM: a PEFT directory or HF id.",
        ),
        click.option(
            "--lora-dir",
            type=click.Path(path_type=Path, file_okay=False, exists=True),
            default=None,
            help="Admins may load adapters at run time (POST /v1/load_lora_adapter, vLLM) from "
            "inside this directory only; paths resolving outside it are refused.",
        ),
        click.option(
            "--allow-hub-adapters",
            is_flag=True,
            default=False,
            help="Admins may also load adapters by Hugging Face id at run time (vLLM downloads).",
        ),
        click.option(
            "--gpu-memory-utilization",
            type=click.FloatRange(0, 1, min_open=True),
            default=0.90,
            show_default=True,
            help="vLLM: fraction of each GPU's memory for weights and KV cache.",
        ),
        click.option(
            "--tensor-parallel-size",
            "-tp",
            type=click.IntRange(1, 64),
            default=1,
            show_default=True,
            help="vLLM: GPUs per replica.",
        ),
        click.option(
            "--max-num-seqs",
            type=click.IntRange(1),
            default=64,
            show_default=True,
            help="vLLM: sequences a replica batches at once.",
        ),
        click.option(
            "--speculative-ngram",
            type=click.IntRange(0, 16),
            default=0,
            show_default=True,
            help="vLLM: n-gram speculative decoding, tokens proposed per step (0 = off).",
        ),
        click.option("--fp8", is_flag=True, help="vLLM: quantize weights to fp8 on load."),
        click.option(
            "--prefix-caching/--no-prefix-caching",
            default=True,
            show_default=True,
            help="vLLM: reuse the KV cache of shared prompt prefixes.",
        ),
        click.option(
            "--vllm-arg",
            "vllm_args",
            multiple=True,
            metavar="ARG",
            help="vLLM: one more argument for `vllm serve`, verbatim (repeatable).",
        ),
        click.option(
            "--idle-shutdown",
            type=Duration(off_words=("",)),
            default=None,
            metavar="DURATION",
            help="Stop the replicas after this long without requests (e.g. 15m); the next "
            "request starts them again and waits.",
        ),
        click.option(
            "--schedule",
            default=None,
            help='Keep replicas warm in these hours, e.g. "mon-fri 08:00-19:00" (scale to zero '
            "outside them after --idle-shutdown, default 15m).",
        ),
    ]
    return with_options(options, command)
