"""Editor post-processing on OpenAI's ``/v1/completions``: opt-in, so OpenAI semantics hold.

Extension fields: ``"stop_rules": true`` turns the stop rules on (``"language"`` names the file's
language; sending a language alone also turns them on); ``"t_max_predict_ms"`` sets a time budget
(llama.cpp semantics). Without them a completion is exactly what OpenAI's API would return.

Also here: reading the one body ``/v1/completions`` receives and validating it as OpenAI's shape
with the same error messages FastAPI would give, since the route first looks for Tabby's
``segments``.
"""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from coderig.serve.languages import load_languages
from coderig.serve.postprocess import EditorRules


def is_tabby_body(raw: Any) -> bool:
    """Tabby's completion body has ``segments``; OpenAI's has ``prompt``."""
    return isinstance(raw, dict) and "segments" in raw


def validate_body(model: type[BaseModel], raw: Any) -> BaseModel:
    """``model`` from the parsed JSON, failing exactly like a declared FastAPI body would."""
    if raw is None:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "missing"}])
    if not isinstance(raw, dict):
        # What FastAPI reports for a declared model body that is not a JSON object.
        raise RequestValidationError(
            [{"type": "model_attributes_type", "loc": ("body",), "msg": "not an object"}]
        )
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors = []
        for error in exc.errors(include_url=False):
            error = dict(error)
            error["loc"] = ("body", *error.get("loc", ()))
            if "ctx" in error:
                error["ctx"] = {key: str(value) for key, value in error["ctx"].items()}
            errors.append(error)
        raise RequestValidationError(errors) from exc


def openai_editor_rules(body, settings) -> EditorRules | None:
    """The rules an OpenAI completion asked for, or None (plain OpenAI semantics)."""
    wants_rules = body.stop_rules if body.stop_rules is not None else body.language is not None
    budget = body.t_max_predict_ms
    if not wants_rules and not budget:
        return None
    language, _ = load_languages().resolve(language=body.language, code=body.prompt)
    rules = EditorRules.for_cursor(body.prompt, body.suffix, language=language)
    if not wants_rules:
        rules.rules = frozenset()
    rules.time_budget_ms = budget
    return rules
