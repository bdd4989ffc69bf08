"""Running one editor completion: the request body, the generation request, the stop rules."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from coderig.serve.editors.prompt import EditorPrompt
from coderig.serve.errors import OpenAIError
from coderig.serve.generate import Event, GenerationRequest
from coderig.serve.postprocess import EditorRules, StopReport, apply_editor_rules
from coderig.serve.schemas import surrogate_path


class EditorBody(BaseModel):
    """Base of the editor APIs' request bodies: unknown fields are ignored (editors send many),
    NaN and infinities are refused, and so are strings with unpaired UTF-16 surrogates (JSON can
    escape them; the tokenizer could not encode them)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        where = surrogate_path(data, keys=True)
        if where is not None:
            raise ValueError(f"{where or 'body'} contains an unpaired UTF-16 surrogate")
        return data


Body = TypeVar("Body", bound=BaseModel)


async def read_body(request: Request, model: type[Body]) -> Body:
    """The JSON body as ``model``, whatever the Content-Type (llama.cpp's server and Ollama
    accept ``curl -d`` without a JSON content type); problems raise a 400 naming the field."""
    data = await request.body()
    if not data.strip():
        raise OpenAIError(400, "missing request body", code="invalid_json")
    try:
        raw = json.loads(data)
    except ValueError as exc:
        message = f"request body is not valid JSON ({exc})"
        raise OpenAIError(400, message, code="invalid_json") from exc
    except RecursionError as exc:
        raise OpenAIError(400, "request body is nested too deeply", code="invalid_json") from exc
    if not isinstance(raw, dict):
        raise OpenAIError(400, "request body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problem = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in problem.get("loc", ())) or None
        message = problem.get("msg", "invalid value").removeprefix("Value error, ")
        raise OpenAIError(
            400, f"{field}: {message}" if field else message, param=field, code="invalid_value"
        ) from exc


def key_name(request: Request) -> str:
    principal = getattr(request.state, "principal", None)
    return principal.name if principal is not None else "anonymous"


def generation_request(
    gateway,
    route: str,
    prompt: EditorPrompt,
    *,
    max_tokens: int | None,
    default_max: int,
    sampling: dict,
    stop: list[str] | None = None,
    user: str | None = None,
) -> GenerationRequest:
    """A generation for ``prompt``. Unlike the OpenAI routes, a token budget above the server's
    limit or the context left is lowered to fit, as llama.cpp does with ``n_predict``: an editor
    cannot act on a 400, and a shorter completion is still a completion."""
    rendered = prompt.rendered
    if max_tokens is not None:
        room = gateway.settings.max_model_len - rendered.tokens
        max_tokens = max(1, min(max_tokens, gateway.prompts.max_tokens_limit, room))
    budget = gateway.prompts.max_tokens(max_tokens, rendered.tokens, default_max)
    return GenerationRequest(
        route=route,
        prompt=rendered.text,
        prompt_tokens=rendered.tokens,
        max_tokens=budget,
        sampling={key: value for key, value in sampling.items() if value is not None},
        stop=list(rendered.stop) + list(stop or []),
        user=user,
        supersedable=True,
    )


def editor_events(
    gateway, gen: GenerationRequest, rules: EditorRules, report: StopReport
) -> AsyncIterator[Event]:
    """The generation's events with the editor stop rules applied."""
    return apply_editor_rules(
        gateway.generator.run(gen),
        gen,
        rules,
        metrics=gateway.metrics,
        count_tokens=gateway.generator.count_tokens,
        report=report,
    )
