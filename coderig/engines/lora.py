"""LoRA adapters served per request: ``--lora name=path`` (repeatable).

A request whose ``"model"`` is an adapter's name is generated with that adapter.

* vLLM batches requests for different adapters together (multi-LoRA): every replica gets every
  adapter (``--enable-lora --lora-modules name=path``), and the gateway sends the adapter's name
  in ``model``. See :mod:`coderig.engines.vllm`.
* llama.cpp's llama-server loads every adapter at start, unapplied, and applies one per request
  (``"lora": [{"id": i, "scale": 1}]``): any replica serves any adapter, from one model copy.
  See :mod:`coderig.engines.llamacpp`.
"""

from __future__ import annotations

import re
from pathlib import Path

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
