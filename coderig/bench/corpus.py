"""The code the typing developers type: a directory of source files, read only when opened.

By default the Python standard library's own source (``sysconfig.get_paths()["stdlib"]``), which
is present wherever Python is; ``--corpus DIR`` points at the team's own code instead, so prompts
have the team's languages, file sizes and line lengths. The file list is sorted, so a seed picks
the same files on every machine that has the same tree.
"""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import overload

from coderig.traffic.typing_team import SourceFile

# Source files a completion server sees; everything else (data, binaries, lockfiles) is skipped.
CODE_EXTENSIONS = frozenset(
    ".py .pyi .js .jsx .mjs .ts .tsx .go .rs .java .kt .kts .scala .c .h .cc .cpp .cxx .hpp .hh "
    ".cs .rb .php .swift .m .mm .lua .sh .bash .zsh .pl .pm .r .jl .dart .ex .exs .erl .hs .ml "
    ".clj .sql .vue .svelte .zig .nim".split()
)
# Directories that hold no code of the team's own (or, in the stdlib, tests and test data with
# deliberately broken files).
SKIP_DIRS = frozenset(
    "__pycache__ node_modules site-packages dist-packages .git .hg .svn .venv venv .tox build "
    "dist target vendor test tests idle_test".split()
)
MIN_BYTES = 200
MAX_BYTES = 512 * 1024


def default_corpus_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


class Corpus(Sequence[SourceFile]):
    """The source files under ``root`` (sorted), each read on first access."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_corpus_dir()
        if not self.root.is_dir():
            raise ValueError(f"corpus: {self.root} is not a directory")
        self.paths = _source_paths(self.root)
        if not self.paths:
            raise ValueError(
                f"corpus: no source files under {self.root} (extensions such as "
                f".py, .ts, .go, between {MIN_BYTES} B and {MAX_BYTES // 1024} KiB)"
            )

    def __len__(self) -> int:
        return len(self.paths)

    @overload
    def __getitem__(self, index: int) -> SourceFile: ...
    @overload
    def __getitem__(self, index: slice) -> list[SourceFile]: ...
    def __getitem__(self, index: int | slice) -> SourceFile | list[SourceFile]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return _read(self.root, self.paths[index])

    def describe(self) -> str:
        return str(self.root)


def _source_paths(root: Path) -> tuple[str, ...]:
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(files):
            path = Path(folder, name)
            if path.suffix.lower() not in CODE_EXTENSIONS:
                continue
            try:
                size = path.stat().st_size
            except OSError:
                continue
            if MIN_BYTES <= size <= MAX_BYTES:
                found.append(path.relative_to(root).as_posix())
    return tuple(found)


@lru_cache(maxsize=256)
def _read(root: Path, relative: str) -> SourceFile:
    # Universal newlines: a CRLF file is typed as the editor shows it, one Enter per line.
    text = (root / relative).read_text(encoding="utf-8", errors="replace")
    return SourceFile(relative, text)
