"""Tabby's server API as ``tabby-agent`` (inside Tabby's VS Code, JetBrains and Vim extensions)
calls it: ``/v1/health``, ``/v1/completions`` with ``segments`` (sharing the path with OpenAI's,
through :meth:`TabbyAPI.dispatch_route_class`), ``/v1/events`` and ``/v1beta/server_setting``, so
a team can point the Tabby extension at coderig. See docs/architecture.md, section 2 (how the
other APIs differ) and section 5.6 (editor API specifics).
"""

from __future__ import annotations

import json
import os
import platform
import time
import uuid
from collections import OrderedDict
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import Field, ValidationError

from coderig import __version__
from coderig.serve.auth import require_key
from coderig.serve.editors.common import (
    EditorBody,
    editor_events,
    generation_request,
    key_name,
)
from coderig.serve.editors.errors import editor_router, tabby_error
from coderig.serve.editors.prompt import ContextSnippet, EditorPrompt, EditorPromptBuilder
from coderig.serve.errors import OpenAIError
from coderig.serve.generate import Finished
from coderig.serve.languages import load_languages
from coderig.serve.postprocess import STOP_RULES, EditorRules, StopReport
from coderig.serve.request_metrics import label_request
from coderig.serve.respond import Encoder, respond

# The Tabby server release whose API this module follows (crates/tabby, v0.32).
TABBY_API_VERSION = "0.32.0"
# Tabby's default `max_decoding_tokens` for code completion.
TABBY_MAX_TOKENS = 64
# Completion ids remembered for attributing events (oldest forgotten first).
COMPLETION_LOG_SIZE = 10_000


_Body = EditorBody


class Declaration(_Body):
    filepath: str
    body: str


class Snippet(_Body):
    filepath: str
    body: str
    score: float = 0.0


class Segments(_Body):
    prefix: str = Field(description="Code before the cursor.")
    suffix: str | None = Field(default=None, description="Code after the cursor.")
    filepath: str | None = Field(default=None, description="Path of the file, relative.")
    git_url: str | None = None
    declarations: list[Declaration] | None = None
    relevant_snippets_from_changed_files: list[Snippet] | None = None
    relevant_snippets_from_recently_opened_files: list[Snippet] | None = None
    clipboard: str | None = None


class DebugOptions(_Body):
    raw_prompt: str | None = None
    return_snippets: bool = False
    return_prompt: bool = False
    disable_retrieval_augmented_code_completion: bool = False


class TabbyCompletionRequest(_Body):
    """Tabby's ``POST /v1/completions`` (told apart from OpenAI's by ``segments``)."""

    language: str | None = Field(default=None, description="VS Code language id.")
    segments: Segments | None = None
    user: str | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    seed: int | None = None
    mode: Literal["standard", "next_edit_suggestion"] = "standard"
    debug_options: DebugOptions | None = None
    # coderig extensions
    max_tokens: int | None = Field(default=None, ge=1, description="coderig: default 64.")
    t_max_predict_ms: int | None = Field(
        default=None, ge=0, description="coderig: time budget (llama.cpp semantics)."
    )
    stop_rules: bool = Field(default=True, description="coderig: editor stop rules.")


class LogEventRequest(_Body):
    type: Literal["view", "select", "dismiss"]
    completion_id: str
    choice_index: int = 0
    view_id: str | None = None
    elapsed: int | None = None


class Acceptance:
    """Views and selects per (language, key), exported as an acceptance-rate gauge."""

    def __init__(self, metrics) -> None:
        self.metrics = metrics
        self.counts: dict[tuple[str, str], list[int]] = {}
        self.log: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def remember(self, completion_id: str, language: str, key: str) -> None:
        self.log[completion_id] = (language, key)
        if len(self.log) > COMPLETION_LOG_SIZE:
            self.log.popitem(last=False)

    def record(self, event: LogEventRequest, key: str) -> tuple[str, str]:
        language, completion_key = self.log.get(event.completion_id, ("unknown", key))
        self.metrics.completion_events.labels(event.type, language, completion_key).inc()
        views, selects = self.counts.setdefault((language, completion_key), [0, 0])
        if event.type == "view":
            views += 1
        elif event.type == "select":
            selects += 1
        self.counts[(language, completion_key)] = [views, selects]
        if views:
            self.metrics.acceptance_rate.labels(language, completion_key).set(selects / views)
        return language, completion_key


class TabbyAPI:
    """Tabby's routes, and the completion handler the shared /v1/completions route calls."""

    def __init__(self, gateway) -> None:
        self.gateway = gateway
        self.prompts = EditorPromptBuilder.for_gateway(gateway)
        self.languages = load_languages()
        self.acceptance = Acceptance(gateway.metrics)
        self.router = self._routes()

    # --- /v1/completions with segments -----------------------------------------------------

    def dispatch_route_class(self) -> type[APIRoute]:
        """A route class for the OpenAI router: on ``POST /v1/completions``, a JSON object with
        ``segments`` goes to Tabby's handler; everything else to the route's own handler, which
        reads the same (cached) body."""
        tabby = self

        class TabbyDispatchRoute(APIRoute):
            def get_route_handler(self):
                handler = super().get_route_handler()
                if self.path != "/v1/completions":
                    return handler

                async def dispatch(request: Request) -> Response:
                    raw = _json_object(await request.body())
                    if raw is not None and "segments" in raw:
                        label_request(request, "tabby")
                        # The route's dependencies are not run on this path: check the key here.
                        await require_key(request)
                        return await tabby.complete(raw, request)
                    return await handler(request)

                return dispatch

        return TabbyDispatchRoute

    async def complete(self, raw: dict[str, Any], request: Request) -> Response:
        """Answer a Tabby completion body (errors in Tabby's shape)."""
        try:
            body = TabbyCompletionRequest.model_validate(raw)
            return await self._complete(body, request)
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem.get("loc", ()))
            message = f"{where}: {problem.get('msg', 'invalid value')}".lstrip(": ")
            error = OpenAIError(400, message, code="invalid_value")
        except OpenAIError as exc:
            error = exc
        return tabby_error(error.status, error.message, error.code, error.headers)

    async def _complete(self, body: TabbyCompletionRequest, request: Request) -> Response:
        gateway = self.gateway
        if body.mode != "standard":
            raise OpenAIError(400, f"mode {body.mode!r} is not supported by coderig")
        debug = body.debug_options or DebugOptions()
        segments = body.segments
        if debug.raw_prompt is None and (segments is None or not segments.prefix):
            # Tabby: "empty prompt from completion request".
            raise OpenAIError(400, "segments.prefix must not be empty", code="empty_prompt")
        max_tokens = min(body.max_tokens or TABBY_MAX_TOKENS, gateway.prompts.max_tokens_limit)
        enabled = frozenset(STOP_RULES if body.stop_rules else ())
        budget = body.t_max_predict_ms or gateway.settings.editor_time_budget_ms
        if debug.raw_prompt is not None:
            language, _ = self.languages.resolve(language=body.language, code=debug.raw_prompt)
            prompt = self.prompts.build(
                prefix=debug.raw_prompt,
                suffix=None,
                language=language,
                reserve=max_tokens,
                user=body.user,
            )
            rules = EditorRules.for_cursor(
                debug.raw_prompt, None, language=language, rules=enabled, time_budget_ms=budget
            )
        else:
            language, _ = self.languages.resolve(
                language=body.language, path=segments.filepath, code=segments.prefix
            )
            snippets = (
                [] if debug.disable_retrieval_augmented_code_completion else _snippets(segments)
            )
            prompt = self.prompts.build(
                prefix=segments.prefix,
                suffix=segments.suffix or None,
                snippets=snippets,
                language=language,
                reserve=max_tokens,
                user=body.user,
            )
            rules = EditorRules.for_cursor(
                segments.prefix,
                segments.suffix,
                language=language,
                rules=enabled,
                time_budget_ms=budget,
            )
        gen = generation_request(
            gateway,
            "tabby",
            prompt,
            max_tokens=body.max_tokens,
            default_max=TABBY_MAX_TOKENS,
            sampling={"temperature": body.temperature, "seed": body.seed},
            user=body.user,
        )
        report = StopReport()
        encoder = TabbyEncoder(self, prompt, debug, rules.language_label, key_name(request), report)
        events = editor_events(gateway, gen, rules, report)
        return await respond(request, events, encoder, stream=False)

    # --- the other routes --------------------------------------------------------------------

    def health(self) -> dict:
        gateway = self.gateway
        device = "cpu" if gateway.settings.engine == "llamacpp" else "cuda"
        return {
            "model": gateway.model_name,
            "chat_model": None,
            "device": device,
            "arch": platform.machine(),
            "cpu_info": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count() or 1,
            "cuda_devices": [],
            "models": {"completion": {"local": {"model_id": gateway.model_name, "device": device}}},
            "version": {
                "build_date": time.strftime("%Y-%m-%d", time.gmtime(gateway.created)),
                "build_timestamp": time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(gateway.created)
                ),
                "git_sha": "",
                "git_describe": f"v{TABBY_API_VERSION}-coderig-{__version__}",
            },
            "webserver": False,
        }

    def _routes(self) -> APIRouter:
        router = editor_router(tabby_error, "tabby")

        @router.get("/v1/health")
        async def tabby_health() -> dict:
            """Tabby's health state: the model and device the agent shows."""
            return self.health()

        @router.post("/v1/health", include_in_schema=False)
        async def tabby_health_post() -> dict:
            return self.health()

        @router.get("/v1beta/server_setting")
        async def tabby_server_setting() -> dict:
            """Tells the agent not to send usage telemetry to TabbyML."""
            return {"disable_client_side_telemetry": True}

        @router.post("/v1/events")
        async def tabby_events(body: LogEventRequest, request: Request) -> Response:
            """A completion was shown (view), accepted (select) or dismissed."""
            self.acceptance.record(body, key_name(request))
            return Response(status_code=200)

        return router


class TabbyEncoder(Encoder):
    """Tabby's answer ``{id, choices: [{index, text}], mode}`` (Tabby does not stream). Once
    there is an answer, its id is remembered so the agent's events about it (view, select) can
    be counted per language and key."""

    def __init__(
        self,
        api: TabbyAPI,
        prompt: EditorPrompt,
        debug: DebugOptions,
        language: str,
        key: str,
        report: StopReport,
    ) -> None:
        self.api = api
        self.prompt = prompt
        self.debug = debug
        self.language = language
        self.key = key
        self.report = report

    def whole(self, text: str, done: Finished) -> Response:
        completion_id = f"cmpl-{uuid.uuid4()}"
        self.api.acceptance.remember(completion_id, self.language, self.key)
        metrics = self.api.gateway.metrics
        metrics.editor_completions.labels("tabby", self.language, self.key).inc()
        answer: dict[str, Any] = {
            "id": completion_id,
            "choices": [{"index": 0, "text": text}],
            "mode": "standard",
        }
        debug, prompt = self.debug, self.prompt
        if debug.return_prompt or debug.return_snippets:
            answer["debug_data"] = {
                "prompt": prompt.rendered.text if debug.return_prompt else None,
                "snippets": [
                    {"filepath": s.filepath, "body": s.body, "score": 1.0} for s in prompt.snippets
                ]
                if debug.return_snippets
                else None,
            }
        headers = self.report.headers()
        if prompt.rendered.fim:
            headers["X-Coderig-FIM"] = prompt.rendered.fim
        return JSONResponse(answer, headers=headers)


def _json_object(data: bytes) -> dict | None:
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: JSON nested too deeply
        return None
    return raw if isinstance(raw, dict) else None


def _snippets(segments: Segments) -> list[ContextSnippet]:
    snippets = [
        ContextSnippet(d.filepath, d.body, "declaration") for d in segments.declarations or []
    ]
    snippets += [
        ContextSnippet(s.filepath, s.body, "changed")
        for s in segments.relevant_snippets_from_changed_files or []
    ]
    snippets += [
        ContextSnippet(s.filepath, s.body, "opened")
        for s in segments.relevant_snippets_from_recently_opened_files or []
    ]
    if segments.clipboard and segments.clipboard.strip():
        snippets.append(ContextSnippet("clipboard", segments.clipboard, "clipboard"))
    return snippets
