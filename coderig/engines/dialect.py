"""What the gateway sends each kind of engine, beyond the OpenAI fields every one accepts.

The gateway renders FIM itself and sends a plain ``prompt`` (vLLM rejects ``suffix``; most
servers would apply no template). What differs between engines:

* the ``model`` field: vLLM and Ollama check it (and vLLM picks a LoRA adapter by it);
  llama-server ignores an unknown one;
* stop *tokens*: vLLM detokenizes without special tokens, so a stop string like
  ``<|endoftext|>`` or ``<|im_end|>`` never matches there — it must also be sent as its id in
  ``stop_token_ids`` (llama.cpp sees special tokens in text, and ignores the extra field);
* "generate exactly max_tokens": the gateway expresses ``ignore_eos`` as ``min_tokens``;
  llama-server has ``ignore_eos`` but no ``min_tokens`` (its dialect sends ``ignore_eos`` when
  ``min_tokens`` equals ``max_tokens``), vLLM has both;
* usage: vLLM and Ollama only put token counts in a stream when asked with
  ``stream_options.include_usage``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

# A stop string -> its token id when it is one special token, else None.
SpecialTokenId = Callable[[str], int | None]


class OpenAIDialect:
    """Rewrites the gateway's upstream payload for a vLLM-like OpenAI server."""

    def __init__(
        self,
        *,
        model_for: Callable[[str | None], str | None],
        special_token_id: SpecialTokenId | None = None,
        native_ignore_eos: bool = False,
    ) -> None:
        self.model_for = model_for
        self.special_token_id = (
            lru_cache(maxsize=256)(special_token_id) if special_token_id else None
        )
        self.native_ignore_eos = native_ignore_eos

    def adapt(self, payload: dict, model: str | None) -> dict:
        payload = dict(payload)
        upstream_model = self.model_for(model)
        if upstream_model:
            payload["model"] = upstream_model
        payload["stream_options"] = {"include_usage": True}
        stops = payload.get("stop") or []
        if self.special_token_id and stops:
            ids = [i for i in (self.special_token_id(s) for s in stops) if i is not None]
            if ids:
                payload["stop_token_ids"] = sorted(set(ids))
        if self.native_ignore_eos:
            min_tokens = payload.get("min_tokens")
            if min_tokens is not None and min_tokens >= payload.get("max_tokens", 0):
                del payload["min_tokens"]
                payload["ignore_eos"] = True
        return payload
