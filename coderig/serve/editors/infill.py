"""llama.cpp server's ``POST /infill``, as llama.vim and llama.vscode call it.

Request: ``input_prefix``, ``input_suffix``, ``input_extra`` ([{filename, text}], chunks of other
buffers), ``prompt`` (the cursor line before the cursor, placed after the FIM middle marker),
``n_predict``, ``n_indent``, ``stop``, ``temperature``, ``top_k``, ``top_p``, ``seed``,
``cache_prompt``, ``t_max_predict_ms``, ``stream``, ``response_fields``; llama.cpp's other
sampling fields are accepted and ignored. Response: ``{content, tokens_cached, truncated,
timings, stop, stop_type, ...}`` or, with ``stream``, SSE ``data: {content, stop}`` events.

``n_predict: 0`` is llama.vim's cache warm-up: the prompt (with the new ``input_extra``) is sent
to a replica in the background with one token to generate, and the request returns at once.
``tokens_cached`` is what the engine reported it found in its cache; where it reported nothing
(a warm-up, or a suggestion an editor rule ended early) the gateway's estimate: the longest
token prefix this prompt shares with one of the last prompts it sent.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from coderig.serve.editors.common import (
    EditorBody,
    editor_events,
    generation_request,
    key_name,
    read_body,
)
from coderig.serve.editors.errors import editor_router, llamacpp_error, llamacpp_error_body
from coderig.serve.editors.prompt import ContextSnippet, EditorPrompt, EditorPromptBuilder
from coderig.serve.errors import OpenAIError
from coderig.serve.generate import Finished, GenerationRequest
from coderig.serve.languages import load_languages
from coderig.serve.postprocess import STOP_RULES, EditorRules, StopReport
from coderig.serve.respond import Encoder, respond, sse_data

# llama.cpp's /completion default n_predict is -1 (until the context is full); an editor that
# omits it gets this many tokens.
DEFAULT_N_PREDICT = 128


class ExtraChunk(EditorBody):
    filename: str = "tmp"  # llama.cpp's default
    text: str = ""


class InfillRequest(EditorBody):
    input_prefix: str = ""
    input_suffix: str = ""
    input_extra: list[ExtraChunk] = Field(default_factory=list)
    prompt: str = Field(default="", description="Text after the FIM middle marker.")
    n_predict: int = Field(default=-1, ge=-1, description="-1: server default; 0: warm up.")
    n_indent: int = Field(default=0, ge=0, description="Stop at a line indented less.")
    stop: list[str] = Field(default_factory=list, max_length=16)
    temperature: float | None = Field(default=None, ge=0.0)
    top_k: int | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    seed: int | None = None
    cache_prompt: bool = True
    t_max_predict_ms: int = Field(default=0, ge=0)
    stream: bool = False
    response_fields: list[str] | None = None
    # coderig extensions
    language: str | None = Field(default=None, description="coderig: the file's language.")
    stop_rules: bool = Field(default=True, description="coderig: editor stop rules.")


class PrefixTracker:
    """The last prompts sent, as token ids, to estimate how much of a new one is cached."""

    def __init__(self, size: int) -> None:
        self.recent: deque[list[int]] = deque(maxlen=max(1, size))

    def cached(self, tokens: list[int]) -> int:
        best = 0
        for previous in self.recent:
            shared = 0
            for a, b in zip(previous, tokens, strict=False):
                if a != b:
                    break
                shared += 1
            best = max(best, shared)
        return best

    def sent(self, tokens: list[int]) -> None:
        self.recent.append(tokens)


class InfillAPI:
    def __init__(self, gateway) -> None:
        self.gateway = gateway
        self.prompts = EditorPromptBuilder.for_gateway(gateway)
        self.languages = load_languages()
        self.tracker = PrefixTracker(gateway.settings.replicas)
        # llama.vim's cache warm-ups in flight, one per developer (flow): a newer context
        # from the same developer replaces theirs, never another developer's.
        self.warmups: dict[str, asyncio.Task] = {}
        self.router = self._routes()

    def _routes(self) -> APIRouter:
        router = editor_router(llamacpp_error, "llama.cpp")

        @router.post("/infill")
        async def infill(request: Request) -> Response:
            """Fill in the middle, llama.cpp-style (llama.vim, llama.vscode)."""
            return await self.handle(await read_body(request, InfillRequest), request)

        return router

    async def handle(self, body: InfillRequest, request: Request) -> Response:
        gateway = self.gateway
        started = time.monotonic()
        code = body.input_prefix + body.prompt
        language, _ = self.languages.resolve(
            language=body.language,
            path=body.input_extra[-1].filename if body.input_extra else None,
            code=code,
        )
        snippets = [ContextSnippet(c.filename, c.text, "extra") for c in body.input_extra]
        n_predict = DEFAULT_N_PREDICT if body.n_predict < 0 else body.n_predict
        n_predict = min(n_predict, gateway.prompts.max_tokens_limit)
        if n_predict == 0:
            return self._warm_up(body, snippets, language, started)
        if not (code or body.input_suffix):
            # Nothing around the cursor: nothing to complete (the prefix-only fallback of a
            # model without FIM tokens could not even start).
            outcome = InfillEncoder(gateway.model_name, False, 0, started, body.response_fields)
            return outcome.whole("", Finished("stop", 0, 0))
        prompt = self._prompt(body, snippets, language, reserve=n_predict)
        rules = EditorRules.for_cursor(
            body.input_prefix + body.prompt,
            body.input_suffix,
            language=language,
            # llama.cpp's own n_indent stop holds even with coderig's rules off
            rules=frozenset(
                STOP_RULES if body.stop_rules else ("dedent",) if body.n_indent else ()
            ),
            min_indent=body.n_indent or None,
            time_budget_ms=body.t_max_predict_ms or gateway.settings.editor_time_budget_ms,
        )
        gen = generation_request(
            gateway,
            "infill",
            prompt,
            max_tokens=None if body.n_predict < 0 else n_predict,
            default_max=DEFAULT_N_PREDICT,
            sampling={
                "temperature": body.temperature,
                "top_k": body.top_k,
                "top_p": body.top_p,
                "seed": body.seed,
            },
            stop=body.stop,
        )
        ids = gateway.tokenizer.encode(gen.prompt)
        cached = self.tracker.cached(ids)
        self.tracker.sent(ids)
        report = StopReport()
        events = editor_events(gateway, gen, rules, report)
        encoder = InfillEncoder(
            gateway.model_name, prompt.truncated, cached, started, body.response_fields, report
        )
        key = key_name(request)
        gateway.metrics.editor_completions.labels("infill", rules.language_label, key).inc()
        return await respond(request, events, encoder, stream=body.stream)

    def _prompt(self, body: InfillRequest, snippets, language, *, reserve: int) -> EditorPrompt:
        """llama.cpp's layout: ``input_prefix``, then the cursor line (``prompt``) after the
        FIM middle marker, ``input_suffix`` and the ``input_extra`` chunks as context."""
        return self.prompts.build(
            prefix=body.input_prefix,
            suffix=body.input_suffix,
            middle=body.prompt,
            snippets=snippets,
            language=language,
            reserve=reserve,
        )

    def _warm_up(self, body, snippets, language, started: float) -> Response:
        """Send the prompt to a replica in the background (one token) and answer now."""
        if not (body.input_prefix or body.input_suffix or body.prompt or snippets):
            outcome = InfillEncoder(self.gateway.model_name, False, 0, started)
            return outcome.whole("", Finished("length", 0, 0))
        prompt = self._prompt(body, snippets, language, reserve=1)
        gen = GenerationRequest(
            "infill_warmup", prompt.rendered.text, prompt.rendered.tokens, 1, {"temperature": 0.0}
        )
        ids = self.gateway.tokenizer.encode(gen.prompt)
        cached = self.tracker.cached(ids)
        self.tracker.sent(ids)
        previous = self.warmups.get(gen.flow)
        if previous is not None and not previous.done():
            previous.cancel()  # a newer context from the same developer supersedes it
        task = asyncio.ensure_future(self._drain(gen))
        self.warmups[gen.flow] = task
        task.add_done_callback(lambda done, flow=gen.flow: self._forget_warmup(flow, done))
        outcome = InfillEncoder(
            self.gateway.model_name, prompt.truncated, cached, started, body.response_fields
        )
        return outcome.whole("", Finished("length", gen.prompt_tokens, 0))

    def _forget_warmup(self, flow: str, task: asyncio.Task) -> None:
        if self.warmups.get(flow) is task:
            del self.warmups[flow]

    async def _drain(self, gen: GenerationRequest) -> None:
        events = self.gateway.generator.run(gen)
        try:
            async for _ in events:
                pass
        except (OpenAIError, asyncio.CancelledError):
            pass  # a warm-up that cannot run is simply skipped
        finally:
            await events.aclose()


class InfillEncoder(Encoder):
    """llama.cpp's answers: SSE ``{content, stop}`` events, then the final object; or the final
    object alone (``response_fields`` selects from it)."""

    def __init__(
        self,
        model: str,
        truncated: bool,
        cached: int,
        started: float,
        fields: list[str] | None = None,
        report: StopReport | None = None,
    ) -> None:
        self.model = model
        self.truncated = truncated
        self.cached = cached
        self.started = started
        self.fields = fields
        self.report = report or StopReport()

    def delta(self, text: str) -> bytes:
        return sse_data({"content": text, "stop": False})

    def finish(self, done: Finished) -> bytes:
        return sse_data(_select(self.final("", done), self.fields))

    def error(self, exc: OpenAIError) -> bytes:
        return sse_data(llamacpp_error_body(exc.status, exc.message, exc.code))

    def whole(self, text: str, done: Finished) -> Response:
        answer = _select(self.final(text, done), self.fields)
        return JSONResponse(answer, headers=self.report.headers())

    def final(self, text: str, done: Finished) -> dict[str, Any]:
        elapsed_ms = (time.monotonic() - self.started) * 1000
        predicted = done.completion_tokens
        # The engine's own count when it gave one; else the gateway's estimate.
        cached = self.cached if done.cached_tokens is None else done.cached_tokens
        evaluated = max(0, done.prompt_tokens - cached)
        stop_type = {"stop": "eos", "length": "limit"}.get(done.finish_reason, "eos")
        if self.report.rule:
            stop_type = "limit"  # llama.cpp reports its n_indent and time-limit stops so
        timings = {
            "cache_n": cached,
            "prompt_n": evaluated,
            "prompt_ms": 0.0,
            "prompt_per_token_ms": 0.0,
            "prompt_per_second": 0.0,
            "predicted_n": predicted,
            "predicted_ms": round(elapsed_ms, 3),
            "predicted_per_token_ms": round(elapsed_ms / predicted, 3) if predicted else 0.0,
            "predicted_per_second": round(predicted / (elapsed_ms / 1000), 3)
            if predicted and elapsed_ms
            else 0.0,
        }
        return {
            "content": text,
            "tokens": [],
            "id_slot": 0,
            "stop": True,
            "model": self.model,
            "tokens_predicted": predicted,
            "tokens_evaluated": done.prompt_tokens,
            "tokens_cached": cached,
            "truncated": self.truncated,
            "stop_type": stop_type,
            "stopping_word": "",
            "timings": timings,
        }


def _select(answer: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """llama.cpp's ``response_fields``: keep the listed fields; ``a/b`` lifts ``answer[a][b]``
    to the top level under the name ``a/b`` (llama.vim reads ``timings/predicted_n``)."""
    if fields is None:
        return answer
    selected: dict[str, Any] = {}
    for name in fields:
        value: Any = answer
        for part in name.split("/"):
            if not isinstance(value, dict) or part not in value:
                break
            value = value[part]
        else:
            selected[name] = value
    return selected
