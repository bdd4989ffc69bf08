"""Request bodies: one fixed JSON body (as vegeta's ``-body``) or generated code prompts.

Generated prompts are slices of real source code — the Python standard library already on the
machine — because that is what a code assistant sends, and because every request gets a
*different* slice: a server with prefix caching (vLLM's APC, llama.cpp's slot cache) must do the
full prefill for each one instead of making the test easy.

Prompt size is a token *target*. Without the model's tokenizer we convert with a chars-per-token
estimate (:data:`DEFAULT_CHARS_PER_TOKEN`, measured on the stdlib with a Llama-family BPE
tokenizer); results record the server's own ``usage.prompt_tokens``, so the report shows what
was actually sent.
"""

from __future__ import annotations

import json
import os
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

DEFAULT_CHARS_PER_TOKEN = 4.0
"""Characters of Python source per token; see docs/results-format.md for how it was measured."""

FIM_PREFIX_SHARE = 0.8
"""Share of a FIM slice sent as ``prompt`` (the code above the cursor); the rest is ``suffix``."""

CHAT_INSTRUCTION = "Continue this Python code. Reply with code only.\n\n"


def endpoint_kind(url: str) -> str:
    """``chat`` for ``.../chat/completions`` URLs, else ``completions``: the two body shapes."""
    path = url.split("?", 1)[0].rstrip("/")
    return "chat" if path.endswith("/chat/completions") else "completions"


@dataclass
class WorkloadSpec:
    """What each request carries. Exactly one of ``body`` or ``prompt_tokens`` drives it."""

    body: bytes | None = None
    body_file: str | None = None
    # A sequence of bodies sent in order (cycling): a scripted workload, e.g. developers typing.
    bodies: list[bytes] | None = None
    endpoint: str = "completions"
    prompt_tokens: int | None = None
    max_tokens: int | None = None
    fim: bool = False
    ignore_eos: bool = False
    model: str | None = None
    stream: bool = False
    include_usage: bool = True
    chars_per_token: float = DEFAULT_CHARS_PER_TOKEN
    extra: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    tokenizer: str | None = None

    def describe(self) -> dict[str, Any]:
        """The workload's fields for the results header (the body itself is not copied)."""
        return {
            "workload": "bodies"
            if self.bodies
            else "body"
            if self.body is not None
            else "generated",
            "bodies": len(self.bodies) if self.bodies else None,
            "body_file": self.body_file,
            "endpoint": self.endpoint,
            "prompt_tokens": self.prompt_tokens,
            "max_tokens": self.max_tokens,
            "fim": self.fim,
            "ignore_eos": self.ignore_eos,
            "model": self.model,
            "chars_per_token": self.chars_per_token
            if self.body is None and not self.tokenizer
            else None,
            "tokenizer": self.tokenizer,
            "extra": self.extra,
        }


def read_bodies(path: str) -> list[bytes]:
    """One JSON body per non-empty line (JSON Lines), each checked to be a JSON object."""
    bodies = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{number}: a body must be a JSON object")
            bodies.append(line)
    if not bodies:
        raise ValueError(f"{path}: no bodies")
    return bodies


def fixed_body(raw: bytes, stream: bool | None, include_usage: bool = True) -> tuple[bytes, bool]:
    """The user's body, sent as-is unless ``--stream/--no-stream`` asks to change ``stream``.

    Returns the bytes to send and whether the response will be an event stream, so the
    attack knows how to read it. A body that is not a JSON object is sent untouched (vegeta
    can attack any endpoint; so can we) and read as a plain response.
    """
    try:
        obj = json.loads(raw)
    except ValueError:
        return raw, bool(stream)
    if not isinstance(obj, dict):
        return raw, bool(stream)
    if stream is None:
        return raw, bool(obj.get("stream", False))
    if bool(obj.get("stream", False)) == stream and (not stream or "stream_options" in obj):
        return raw, stream
    obj["stream"] = stream
    if stream and include_usage:
        obj.setdefault("stream_options", {"include_usage": True})
    elif not stream:
        obj.pop("stream_options", None)
    return json.dumps(obj).encode(), stream


def generated_bodies(spec: WorkloadSpec, count: int) -> list[bytes]:
    """``count`` distinct JSON bodies, one per scheduled request, built before the attack."""
    if spec.prompt_tokens is None:
        raise ValueError("generated workload needs prompt_tokens")
    if spec.fim and spec.endpoint != "completions":
        raise ValueError("FIM (prefix + suffix) needs a /v1/completions URL, not chat")
    size = max(1, round(spec.prompt_tokens * spec.chars_per_token))
    if spec.tokenizer:
        # Cut generously by characters, then exactly by the model's own tokens.
        tok = GgufTokenizer(spec.tokenizer)
        slices = [
            tok.cut(s, spec.prompt_tokens) for s in prompt_slices(size * 2, count, seed=spec.seed)
        ]
    else:
        slices = prompt_slices(size, count, seed=spec.seed)
    bodies = []
    for text in slices:
        body: dict[str, Any] = {}
        if spec.model:
            body["model"] = spec.model
        if spec.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": CHAT_INSTRUCTION + text}]
        elif spec.fim:
            cut = _line_boundary(text, int(len(text) * FIM_PREFIX_SHARE))
            body["prompt"], body["suffix"] = text[:cut], text[cut:]
        else:
            body["prompt"] = text
        if spec.max_tokens is not None:
            body["max_tokens"] = spec.max_tokens
            if spec.ignore_eos:
                # vLLM honours both; llama.cpp's server reads ignore_eos; llama-cpp-python's
                # server reads min_tokens. Opt-in: a strict server may reject unknown fields.
                body["ignore_eos"] = True
                body["min_tokens"] = spec.max_tokens
        body["stream"] = spec.stream
        if spec.stream and spec.include_usage:
            body["stream_options"] = {"include_usage": True}
        body.update(spec.extra)
        bodies.append(json.dumps(body).encode())
    return bodies


class GgufTokenizer:
    """A model's own tokenizer, read from its GGUF file (vocabulary only: fast, no weights).

    Used by ``--tokenizer`` to make generated prompts exactly ``prompt_tokens`` long for that
    model instead of relying on the chars-per-token estimate. Needs llama-cpp-python.
    """

    def __init__(self, path: str):
        try:
            import llama_cpp
        except ImportError as exc:  # pragma: no cover - llama-cpp-python is a dependency
            raise ValueError("--tokenizer needs llama-cpp-python installed") from exc
        if not Path(path).is_file():
            raise ValueError(f"--tokenizer: no GGUF file at {path}")
        try:
            from llama_cpp._utils import suppress_stdout_stderr
        except ImportError:  # pragma: no cover
            from contextlib import nullcontext as suppress_stdout_stderr
        with suppress_stdout_stderr(disable=False):
            self._model = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)

    @property
    def vocab_size(self) -> int:
        return self._model.n_vocab()

    @property
    def metadata(self) -> dict[str, str]:
        """The GGUF's scalar metadata (``general.*``, ``<arch>.block_count``...)."""
        return dict(self._model.metadata)

    def tokens(self, text: str) -> list[int]:
        return self._model.tokenize(text.encode(), add_bos=False, special=False)

    def count(self, text: str) -> int:
        return len(self.tokens(text))

    def cut(self, text: str, n: int) -> str:
        """The longest prefix of ``text`` that is ``n`` tokens long."""
        return self._model.detokenize(self.tokens(text)[:n]).decode("utf-8", errors="ignore")


def _line_boundary(text: str, pos: int) -> int:
    """``pos`` moved forward to the start of the next line, so a cut never splits a token."""
    nl = text.find("\n", pos)
    return len(text) if nl < 0 else nl + 1


def prompt_slices(size: int, count: int, seed: int = 0) -> list[str]:
    """``count`` different slices of about ``size`` characters of stdlib source.

    Slices are consecutive and non-overlapping through the corpus; once it is used up they
    start again at a shifted offset, so no two prompts share a start (and so a cached prefix).
    ``seed`` picks where in the corpus the first slice starts.
    """
    corpus = _corpus(min_chars=size * min(count, 20_000) + size)
    span = len(corpus) - size - 1
    if span <= 0:
        raise ValueError(f"prompt of {size} characters is larger than the source corpus")
    out = []
    start = (seed * 104_729) % span
    for i in range(count):
        pos = (start + i * size + (i * size // span) * 7_919) % span
        # Start at a line so each prompt reads like a file excerpt, not a torn token.
        line_start = corpus.rfind("\n", 0, pos) + 1
        out.append(corpus[line_start : line_start + size])
    return out


def _source_files() -> Iterator[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for root, dirs, files in os.walk(stdlib):
        dirs[:] = sorted(d for d in dirs if d not in ("site-packages", "__pycache__"))
        for name in sorted(files):
            if name.endswith(".py"):
                yield Path(root) / name


@lru_cache(maxsize=4)
def _corpus_cached(min_chars: int) -> str:
    parts: list[str] = []
    total = 0
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in _source_files():
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        chunk = f"# {path.relative_to(stdlib)}\n{text}\n"
        parts.append(chunk)
        total += len(chunk)
        if total >= min_chars:
            break
    return "".join(parts)


def _corpus(min_chars: int) -> str:
    # Round up so nearby sizes share one cached corpus instead of re-reading the stdlib.
    bucket = 1 << max(20, (min_chars - 1).bit_length())
    return _corpus_cached(bucket)
