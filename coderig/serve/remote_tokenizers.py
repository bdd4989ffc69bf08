"""Tokenizers for engines whose weights are not a GGUF file the gateway can read:
:class:`HFTokenizer` (a Hugging Face checkpoint: the tokenizer vLLM runs) and
:class:`ApproxTokenizer` (``--engine external`` without ``--tokenizer``: a deliberate
under-estimate, 4 bytes a token). See docs/architecture.md, section 5.9 (tokenizers for other
engines).
"""

from __future__ import annotations

from pathlib import Path

from coderig.serve.tokenizer import EncodingTokenizer


class HFTokenizer(EncodingTokenizer):
    """A Hugging Face tokenizer (local checkpoint directory, or repo id in the local cache)."""

    def __init__(self, source: str | Path, *, offline: bool = True) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError as exc:
            raise ImportError(
                "reading a Hugging Face tokenizer needs transformers (vLLM installs it): "
                "pip install transformers"
            ) from exc
        self._tok = AutoTokenizer.from_pretrained(str(source), local_files_only=offline)
        probe = "a"
        self.add_bos = len(self._tok.encode(probe)) > len(
            self._tok.encode(probe, add_special_tokens=False)
        )
        self.bos_token = self._tok.bos_token or ""
        self.eos_token = self._tok.eos_token or ""
        self.chat_template = getattr(self._tok, "chat_template", None)
        self.context_length = _hf_context_length(source)

    def encode(self, text: str, *, special: bool = True) -> list[int]:
        if not text:
            return []
        return list(
            self._tok(text, add_special_tokens=False, split_special_tokens=not special).input_ids
        )

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=False)

    def token_id(self, text: str) -> int | None:
        """The id of ``text`` when it is one special token (for vLLM's ``stop_token_ids``)."""
        ids = self.encode(text)
        return ids[0] if len(ids) == 1 and self.is_special_token(text) else None


class ApproxTokenizer:
    """No vocabulary: byte-length estimates, never an over-count (see the module docstring)."""

    BYTES_PER_TOKEN = 4
    add_bos = False
    bos_token = ""
    eos_token = ""
    chat_template = None
    context_length = None

    def estimate(self, text: str) -> int:
        return -(-len(text.encode("utf-8")) // self.BYTES_PER_TOKEN)

    def encode(self, text: str, *, special: bool = True) -> list[int]:
        """Placeholder ids of the estimated length: only their count is meaningful."""
        return [0] * self.estimate(text)

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError("an approximate tokenizer cannot decode")

    def is_special_token(self, text: str) -> bool:
        return False

    def count_prompt(self, text: str) -> int:
        return self.estimate(text)


def _hf_context_length(source: str | Path) -> int | None:
    import json

    config = Path(source) / "config.json"
    try:
        value = json.loads(config.read_text()).get("max_position_embeddings")
    except (OSError, ValueError):
        return None
    return int(value) if isinstance(value, int) else None
