"""The gateway's own copy of the model's tokenizer.

The gateway counts prompt tokens (to enforce ``--max-model-len`` before a replica wastes time
on a prompt that cannot fit), checks that FIM markers are single special tokens, and renders
chat templates. For GGUF models it loads llama.cpp's vocabulary only (``vocab_only=True``:
no weights, ~0.1 s), so counts are exactly the ones the llama.cpp replica will see.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class Tokenizer(Protocol):
    """What the gateway needs from a tokenizer; one implementation per weight format."""

    add_bos: bool
    bos_token: str
    eos_token: str
    chat_template: str | None

    def encode(self, text: str, *, special: bool = True) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def is_special_token(self, text: str) -> bool: ...

    def count_prompt(self, text: str) -> int: ...


class EncodingTokenizer:
    """What every tokenizer derives from its ``encode`` and ``add_bos`` alike."""

    add_bos: bool

    def encode(self, text: str, *, special: bool = True) -> list[int]:
        raise NotImplementedError

    def is_special_token(self, text: str) -> bool:
        """True when ``text`` is one token with ``special=True`` and splits up without it."""
        with_special = self.encode(text, special=True)
        if len(with_special) != 1:
            return False
        return self.encode(text, special=False) != with_special

    def count_prompt(self, text: str) -> int:
        """Prompt length in tokens, counting the BOS the engine will add (as vLLM's
        ``add_special_tokens=True`` and llama.cpp do)."""
        return len(self.encode(text)) + (1 if self.add_bos else 0)


@dataclass
class GGUFTokenizer(EncodingTokenizer):
    """llama.cpp's tokenizer for a GGUF file, with no weights loaded."""

    path: Path

    def __post_init__(self) -> None:
        from llama_cpp import Llama
        from llama_cpp._utils import suppress_stdout_stderr

        # llama.cpp logs a context-size warning even for a vocabulary-only load.
        with suppress_stdout_stderr(disable=False):
            self._llama = Llama(str(self.path), vocab_only=True, verbose=False)
        self.metadata: dict[str, str] = dict(self._llama.metadata)
        self.add_bos = bool(self._llama._model.add_bos_token())
        self.bos_token = self._piece(self._llama.token_bos())
        self.eos_token = self._piece(self._llama.token_eos())
        self.chat_template = self.metadata.get("tokenizer.chat_template")
        self.context_length = _context_length(self.metadata)

    def _piece(self, token_id: int) -> str:
        if token_id < 0:
            return ""
        return self._llama.detokenize([token_id], special=True).decode("utf-8", errors="replace")

    def encode(self, text: str, *, special: bool = True) -> list[int]:
        """Token ids as llama-cpp-python's server computes them for a string prompt."""
        if not text:
            return []
        return self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=special)

    def decode(self, ids: list[int]) -> str:
        return self._llama.detokenize(ids, special=True).decode("utf-8", errors="replace")


def _context_length(metadata: dict[str, str]) -> int | None:
    architecture = metadata.get("general.architecture", "")
    value = metadata.get(f"{architecture}.context_length")
    return int(value) if value else None
