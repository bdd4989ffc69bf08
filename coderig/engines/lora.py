"""LoRA adapters served per request: ``--lora name=path`` (repeatable).

A request whose ``"model"`` is an adapter's name is generated with that adapter.

* vLLM batches requests for different adapters together (multi-LoRA): every replica gets every
  adapter (``--enable-lora --lora-modules name=path``), and the gateway sends the adapter's name
  in ``model``. See :mod:`coderig.engines.vllm`.
* A llama.cpp replica applies one adapter (or none) to its whole context, fixed at load. So each
  adapter gets replicas of its own (``--lora-replicas``, 1 by default), started like the base
  ones plus ``--lora_path``; base replicas come first. The pool knows which names each replica
  answers (``Replica.models``), and routing picks among ``pool.replicas_for(model)``. This costs
  a model copy per adapter replica — fine for small completion models on CPU, and the reason the
  GPU path uses vLLM.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from coderig.engines.base import Launch
from coderig.engines.llamacpp import LlamaCppEngine

_NAME = re.compile(r"^[A-Za-z0-9][\w.:/-]{0,127}$")


def parse_lora_specs(specs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["sql=./sql.gguf", ...]`` -> ``{"sql": "./sql.gguf"}``; a ValueError says what is wrong."""
    adapters: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise ValueError(f"--lora {spec!r}: expected NAME=PATH")
        if not _NAME.match(name):
            raise ValueError(f"--lora {spec!r}: {name!r} is not a usable model name")
        if name in adapters:
            raise ValueError(f"--lora {name} is given twice")
        adapters[name] = path
    return adapters


def check_gguf_adapter(name: str, path: str) -> Path:
    """A llama.cpp adapter is a local GGUF file (PEFT ones: convert with convert_lora_to_gguf)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"--lora {name}={path}: no such file")
    with open(file, "rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ValueError(
                f"--lora {name}={path}: not a GGUF file; llama.cpp needs the adapter converted "
                "with llama.cpp's convert_lora_to_gguf.py (PEFT directories are for --engine vllm)"
            )
    return file.resolve()


@dataclass
class LlamaCppLoraEngine:
    """llama.cpp replicas where some load an adapter: ``layout[i]`` is replica i's adapter."""

    base: LlamaCppEngine
    adapters: dict[str, Path]
    layout: list[str | None] = field(default_factory=list)
    name: str = "llamacpp"
    slots: int = 1
    supports_min_tokens: bool = True

    @classmethod
    def build(
        cls, base: LlamaCppEngine, adapters: dict[str, Path], base_replicas: int, per_adapter: int
    ) -> LlamaCppLoraEngine:
        layout: list[str | None] = [None] * base_replicas
        for adapter in adapters:
            layout += [adapter] * per_adapter
        return cls(base=base, adapters=adapters, layout=layout, slots=base.slots)

    @property
    def replicas(self) -> int:
        return len(self.layout)

    def models_for(self, index: int, base_name: str) -> frozenset[str]:
        adapter = self.layout[index]
        return frozenset({adapter if adapter is not None else base_name})

    def launch(self, *, index: int, port: int) -> Launch:
        launch = self.base.launch(index=index, port=port)
        adapter = self.layout[index]
        if adapter is None:
            return launch
        argv = [*launch.argv, "--lora_path", str(self.adapters[adapter])]
        return Launch(argv=argv, env=launch.env, health_path=launch.health_path)
