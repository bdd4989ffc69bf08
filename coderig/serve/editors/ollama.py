"""Ollama's ``/api/generate``, ``/api/tags`` and ``/api/show``, for Continue and Twinny:
completions with a ``suffix`` (fill-in-the-middle) or a ``raw`` prompt, NDJSON streams by
default, editor stop rules on, errors as Ollama's ``{"error": "..."}``. See docs/architecture.md,
section 2 (how the other APIs differ) and section 5.6 (editor API specifics).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
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
from coderig.serve.editors.errors import editor_router, ollama_error
from coderig.serve.editors.prompt import EditorPromptBuilder
from coderig.serve.errors import OpenAIError
from coderig.serve.fim import FimTemplate
from coderig.serve.generate import Finished
from coderig.serve.languages import load_languages
from coderig.serve.postprocess import STOP_RULES, EditorRules, StopReport
from coderig.serve.respond import Encoder, respond

NDJSON = "application/x-ndjson"


class GenerateOptions(EditorBody):
    num_predict: int | None = Field(default=None, ge=-2)
    temperature: float | None = Field(default=None, ge=0.0)
    top_k: int | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


class GenerateRequest(EditorBody):
    model: str = ""
    prompt: str = ""
    suffix: str = ""
    raw: bool = False
    system: str = ""
    template: str = ""
    context: list[int] | None = None
    stream: bool = True
    format: Any = None
    images: list[str] | None = None
    options: GenerateOptions = Field(default_factory=GenerateOptions)
    keep_alive: Any = None
    # coderig extensions
    language: str | None = Field(default=None, description="coderig: the file's language.")
    stop_rules: bool = Field(default=True, description="coderig: editor stop rules.")
    t_max_predict_ms: int | None = Field(default=None, ge=0, description="coderig: time budget.")


class ShowRequest(EditorBody):
    model: str = ""
    name: str = ""  # older clients (Continue) send "name"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


def go_template(fim: FimTemplate | None) -> str:
    """The model's prompt template in Ollama's Go-template form."""
    if fim is None:
        return (
            "{{ .Prompt }}{{- /* coderig accepts .Suffix, but this model has no fill-in-the-middle"
            " tokens: it completes from the prompt alone */ -}}"
        )
    body = fim.template.replace("{prefix}", "{{ .Prompt }}").replace("{suffix}", "{{ .Suffix }}")
    return f"{{{{- if .Suffix }}}}{body}{{{{- else }}}}{{{{ .Prompt }}}}{{{{- end }}}}"


def split_fim(prompt: str, fim: FimTemplate | None) -> tuple[str, str] | None:
    """(prefix, suffix) of a prompt already rendered with ``fim``, or None."""
    if fim is None or not all(marker in prompt for marker in fim.markers):
        return None
    pattern = re.escape(fim.template)
    pattern = pattern.replace(re.escape("{prefix}"), "(?P<prefix>.*)")
    pattern = pattern.replace(re.escape("{suffix}"), "(?P<suffix>.*)")
    found = re.fullmatch(pattern, prompt, re.DOTALL)
    return (found["prefix"], found["suffix"]) if found else None


class OllamaAPI:
    def __init__(self, gateway) -> None:
        self.gateway = gateway
        self.prompts = EditorPromptBuilder.for_gateway(gateway)
        self.languages = load_languages()
        self.router = self._routes()

    @property
    def tag_name(self) -> str:
        name = self.gateway.model_name
        return name if ":" in name else f"{name}:latest"

    def check_model(self, name: str) -> None:
        if not name:
            raise OpenAIError(400, "model is required")
        if name not in {self.gateway.model_name, self.tag_name}:
            raise OpenAIError(404, f"model '{name}' not found, try pulling it first")

    def _routes(self) -> APIRouter:
        router = editor_router(ollama_error, "ollama")

        @router.post("/api/generate")
        async def ollama_generate(request: Request) -> Response:
            """Generate a completion (``suffix`` for fill-in-the-middle), NDJSON by default."""
            return await self.generate(await read_body(request, GenerateRequest), request)

        @router.get("/api/tags")
        async def ollama_tags() -> dict:
            """The served model, as Ollama lists local models."""
            return {"models": [self.model_entry()]}

        @router.post("/api/show")
        async def ollama_show(request: Request) -> dict:
            """The served model's template (with ``.Suffix`` for FIM), parameters and details."""
            body = await read_body(request, ShowRequest)
            self.check_model(body.model or body.name)
            return self.show()

        return router

    # --- models ------------------------------------------------------------------------------

    def details(self) -> dict:
        metadata = getattr(self.gateway.tokenizer, "metadata", {}) or {}
        family = metadata.get("general.architecture", "")
        return {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family] if family else None,
            "parameter_size": metadata.get("general.size_label", ""),
            "quantization_level": "",
        }

    def model_entry(self) -> dict:
        path = getattr(self.gateway.tokenizer, "path", None)
        size = path.stat().st_size if path is not None and path.exists() else 0
        modified = (
            dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).isoformat()
            if size
            else now_iso()
        )
        return {
            "name": self.tag_name,
            "model": self.tag_name,
            "modified_at": modified,
            "size": size,
            "digest": "",
            "details": self.details(),
        }

    def show(self) -> dict:
        gateway = self.gateway
        fim = gateway.fim_template
        template = go_template(fim)
        parameters = [f"num_ctx {gateway.settings.max_model_len}"]
        parameters += [f"stop {json.dumps(stop)}" for stop in (fim.stop if fim else ())]
        details = self.details()
        return {
            "license": "",
            "modelfile": f"# Served by coderig\nFROM {gateway.model_name}\n"
            f'TEMPLATE """{template}"""\n' + "\n".join(f"PARAMETER {p}" for p in parameters),
            "parameters": "\n".join(parameters),
            "template": template,
            "details": details,
            "model_info": {
                "general.architecture": details["family"],
                f"{details['family'] or 'model'}.context_length": gateway.settings.max_model_len,
            },
            "capabilities": ["completion", "insert"],
            "modified_at": now_iso(),
        }

    # --- /api/generate -----------------------------------------------------------------------

    async def generate(self, body: GenerateRequest, request: Request) -> Response:
        gateway = self.gateway
        started = time.monotonic()
        self.check_model(body.model)
        if body.raw and (body.template or body.system or body.context):
            raise OpenAIError(400, "raw mode does not support template, system, or context")
        if body.format:
            raise OpenAIError(400, "format is not supported by this server")
        if body.images:
            raise OpenAIError(400, "images are not supported by this server")
        options = body.options
        if (not body.prompt and not body.suffix) or options.num_predict == 0:
            # Ollama loads the model and answers at once.
            return JSONResponse(
                generate_chunk(gateway.model_name, "", done=True, done_reason="load")
            )
        prefix, suffix = body.prompt, body.suffix or None
        if body.raw:
            suffix = None  # Ollama ignores the suffix of a raw prompt
            split = split_fim(body.prompt, gateway.fim_template)
            rules_prefix, rules_suffix = split if split else (body.prompt, None)
        else:
            split = split_fim(body.prompt, gateway.fim_template) if not suffix else None
            rules_prefix, rules_suffix = split if split else (prefix, suffix)
        language, _ = self.languages.resolve(language=body.language, code=rules_prefix)
        requested = None if options.num_predict in (None, -1, -2) else options.num_predict
        default = gateway.settings.default_max_tokens if options.num_predict is None else None
        if body.raw or split:
            prompt = self.prompts.raw(body.prompt, reserve=requested or default or 1)
        else:
            prompt = self.prompts.build(
                prefix=prefix, suffix=suffix, language=language, reserve=requested or default or 1
            )
        stop = [options.stop] if isinstance(options.stop, str) else list(options.stop or [])
        gen = generation_request(
            gateway,
            "ollama",
            prompt,
            max_tokens=requested,
            default_max=default,
            sampling={
                "temperature": options.temperature,
                "top_k": options.top_k,
                "top_p": options.top_p,
                "seed": options.seed,
                "presence_penalty": options.presence_penalty,
                "frequency_penalty": options.frequency_penalty,
            },
            stop=stop,
        )
        rules = EditorRules.for_cursor(
            rules_prefix,
            rules_suffix,
            language=language,
            rules=frozenset(STOP_RULES if body.stop_rules else ()),
            time_budget_ms=body.t_max_predict_ms or gateway.settings.editor_time_budget_ms,
        )
        report = StopReport()
        events = editor_events(gateway, gen, rules, report)
        gateway.metrics.editor_completions.labels(
            "ollama", rules.language_label, key_name(request)
        ).inc()
        encoder = GenerateEncoder(gateway.model_name, started, report)
        return await respond(request, events, encoder, stream=body.stream)


class GenerateEncoder(Encoder):
    """Ollama's ``/api/generate`` answers: NDJSON lines ``{response, done: false}`` and a last
    one with ``done: true`` and the counters; or that last object alone."""

    media_type = NDJSON

    def __init__(self, model: str, started: float, report: StopReport) -> None:
        self.model = model
        self.started = started
        self.report = report

    def stream_headers(self) -> dict[str, str]:
        return {}

    def delta(self, text: str) -> bytes:
        return _line(generate_chunk(self.model, text))

    def finish(self, done: Finished) -> bytes:
        return _line(self.final("", done))

    def error(self, exc: OpenAIError) -> bytes:
        return _line({"error": exc.message})

    def whole(self, text: str, done: Finished) -> Response:
        return JSONResponse(self.final(text, done), headers=self.report.headers())

    def final(self, text: str, done: Finished) -> dict:
        total_ns = int((time.monotonic() - self.started) * 1e9)
        return generate_chunk(
            self.model,
            text,
            done=True,
            done_reason=done.finish_reason,
            total_duration=total_ns,
            load_duration=0,
            prompt_eval_count=done.prompt_tokens,
            prompt_eval_duration=0,
            eval_count=done.completion_tokens,
            eval_duration=total_ns,
        )


def generate_chunk(model: str, text: str, *, done: bool = False, **extra) -> dict:
    return {"model": model, "created_at": now_iso(), "response": text, "done": done, **extra}


def _line(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"
