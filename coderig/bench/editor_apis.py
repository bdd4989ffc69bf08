"""The editor APIs a typing benchmark speaks: how a completion request is sent and read back.

Each is the request an editor extension makes and the response it reads, as coderig's gateway
serves them (``coderig/serve/editors/``) and as the original servers do:

========  ===========================  =====================================================
api       path (after ``--url``)       body and response
========  ===========================  =====================================================
openai    ``POST /v1/completions``     ``prompt`` + ``suffix``, ``stream`` with
                                       ``stream_options.include_usage``; SSE of
                                       ``choices[0].text``, usage in the last chunk
                                       (coderig, vLLM, llama.cpp's ``llama-server``)
infill    ``POST /infill``             llama.cpp's: ``input_prefix`` (lines above the cursor's),
                                       ``prompt`` (the cursor's line up to the cursor),
                                       ``input_suffix``, ``n_predict``, ``n_indent`` as llama.vim
                                       sends them, ``stream``; SSE of ``{content, stop}``, the
                                       last event with ``tokens_cached`` and ``timings``
                                       (coderig, ``llama-server`` run directly)
ollama    ``POST /api/generate``       ``model``, ``prompt`` + ``suffix``,
                                       ``options.num_predict``; NDJSON of ``{response, done}``
                                       (coderig, Ollama; Continue and Twinny call it)
tabby     ``POST /v1/completions``     Tabby's ``segments`` {``prefix``, ``suffix``,
                                       ``filepath``}; one JSON answer ``choices[0].text`` (Tabby
                                       does not stream: the first token is not observable)
========  ===========================  =====================================================

Every request asks for greedy decoding (``temperature`` 0), so a replay gives the same
suggestions for the same prompts and the acceptance rate is comparable between runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from coderig.bench.streams import cached_prompt_tokens, error_text, openai_text
from coderig.traffic.typing_team import CompletionRequest

APIS = ("openai", "infill", "ollama", "tabby")


@dataclass
class Reply:
    """What has been read of one response so far."""

    text: list[str]
    token_times: list[float]
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    error: str = ""

    @classmethod
    def empty(cls) -> Reply:
        return cls([], [])


@dataclass(frozen=True)
class EditorApi:
    """One API: its path, how its response is framed, and how to build and read it."""

    name: str
    path: str
    framing: Literal["sse", "ndjson", "json"]

    @property
    def stream(self) -> bool:
        return self.framing != "json"

    def url(self, base: str) -> str:
        """``base`` (a server's root URL, query kept) joined with this API's path; a URL that
        already ends with the path is used as it is."""
        parts = urlsplit(base)
        path = parts.path.rstrip("/")
        if not path.endswith(self.path):
            path += self.path
        return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))

    def body(self, request: CompletionRequest, max_tokens: int, model: str | None) -> dict:
        if self.name == "openai":
            body: dict = {"model": model} if model else {}
            body.update(
                prompt=request.prefix,
                suffix=request.suffix,
                max_tokens=max_tokens,
                temperature=0.0,
                stream=True,
                stream_options={"include_usage": True},
            )
            return body
        if self.name == "infill":
            line = request.line_prefix
            return {
                "input_prefix": request.prefix[: len(request.prefix) - len(line)],
                "prompt": line,
                "input_suffix": request.suffix,
                "input_extra": [],
                "n_predict": max_tokens,
                "n_indent": len(line) - len(line.lstrip(" \t")),
                "temperature": 0.0,
                "cache_prompt": True,
                "stream": True,
            }
        if self.name == "ollama":
            return {
                "model": model or "",
                "prompt": request.prefix,
                "suffix": request.suffix,
                "stream": True,
                "options": {"num_predict": max_tokens, "temperature": 0.0},
            }
        # tabby: max_tokens is coderig's extension (Tabby itself uses its server setting).
        return {
            "segments": {
                "prefix": request.prefix,
                "suffix": request.suffix,
                "filepath": request.path,
            },
            "temperature": 0.0,
            "max_tokens": max_tokens,
        }

    def take(self, obj: dict, reply: Reply, now: float) -> None:
        """Fold one parsed event (or the whole JSON answer) into ``reply``."""
        if "error" in obj:
            reply.error = error_text(obj["error"])
            return
        if self.name == "ollama":
            text = obj.get("response")
            if obj.get("done"):
                reply.prompt_tokens = _int(obj.get("prompt_eval_count"))
                reply.completion_tokens = _int(obj.get("eval_count"))
        elif self.name == "infill":
            text = obj.get("content")
            if obj.get("stop"):
                reply.prompt_tokens = _int(obj.get("tokens_evaluated"))
                reply.completion_tokens = _int(obj.get("tokens_predicted"))
        else:
            text = openai_text(obj)
            usage = obj.get("usage")
            if isinstance(usage, dict):
                reply.prompt_tokens = _int(usage.get("prompt_tokens"))
                reply.completion_tokens = _int(usage.get("completion_tokens"))
        cached = cached_prompt_tokens(obj)
        if cached is not None:
            reply.cached_tokens = cached
        if isinstance(text, str) and text:
            reply.text.append(text)
            if self.stream:
                reply.token_times.append(now)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


EDITOR_APIS = {
    "openai": EditorApi("openai", "/v1/completions", "sse"),
    "infill": EditorApi("infill", "/infill", "sse"),
    "ollama": EditorApi("ollama", "/api/generate", "ndjson"),
    "tabby": EditorApi("tabby", "/v1/completions", "json"),
}


def editor_api(name: str) -> EditorApi:
    try:
        return EDITOR_APIS[name]
    except KeyError:
        raise ValueError(f"api must be one of {', '.join(APIS)}, got {name!r}") from None
