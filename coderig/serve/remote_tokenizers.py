"""Tokenizers for engines whose weights are not a GGUF file the gateway can read.

The gateway needs a tokenizer for three things: counting prompt tokens (``--max-model-len``
checks and metrics), checking that a FIM family's markers are single special tokens, and
rendering chat templates. What it uses depends on what is on this disk:

* :class:`HFTokenizer` — a Hugging Face checkpoint (vLLM's own input): ``transformers``'
  ``AutoTokenizer``, the very tokenizer vLLM runs, so counts and special tokens are exact.
  vLLM depends on transformers, so wherever ``--engine vllm`` runs this is available.
* :class:`GGUFTokenizer` (``coderig.serve.tokenizer``) — for ``--engine external --tokenizer
  model.gguf`` in front of a llama-server.
* :class:`ApproxTokenizer` — ``--engine external`` with no ``--tokenizer``: the vocabulary is
  on another machine. Prompt counts are a deliberate *under*-estimate (4 bytes a token), so the
  gateway never refuses a prompt the engine would take; the engine enforces its own context limit
  (its 400 is passed through), and reported usage comes from the engine
  (``stream_options.include_usage``). FIM is chosen from the model's name (``choose_template``
  with no vocabulary) or ``--fim-template``; there is no chat template, so chat needs
  ``--tokenizer``.

Asking the engine's ``/tokenize`` route per request was considered and rejected: it puts a
network round trip in front of every completion, on the latency path that matters most.
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
