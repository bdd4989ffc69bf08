"""One parse of a GGUF per test session: gguf-py takes seconds to read SmolLM2's vocabulary,
and the FIM copies and the LoRA adapter are all built from the same embedded model."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import gguf


def read_gguf(path: Path | str) -> gguf.GGUFReader:
    return _read(Path(path).resolve())


@cache
def _read(path: Path) -> gguf.GGUFReader:
    return gguf.GGUFReader(path)
