"""The OpenAPI document, made to say exactly what this server accepts and answers.

FastAPI derives most of it from the pydantic models; what depends on the server's settings or
on the model it serves is filled in here: the ``max_tokens`` ceiling (``--max-tokens-limit``),
whether an empty prompt is allowed (only with a suffix, and only for a model with FIM tokens),
the ``text/event-stream`` form of streamed answers, and 400 — not FastAPI's 422 — for invalid
bodies. Schema fuzzing (schemathesis, in the tests) holds the server to this document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

STREAMED_ROUTES = ("/v1/completions", "/v1/chat/completions")


def install_openapi(app: FastAPI, *, max_tokens_limit: int, fim: bool) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _refine(schema, max_tokens_limit=max_tokens_limit, fim=fim)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _refine(schema: dict[str, Any], *, max_tokens_limit: int, fim: bool) -> None:
    components = schema.get("components", {}).get("schemas", {})
    for name in ("CompletionRequest", "ChatCompletionRequest"):
        properties = components.get(name, {}).get("properties", {})
        for field in ("max_tokens", "max_completion_tokens"):
            if field in properties:
                properties[field]["maximum"] = max_tokens_limit
    completion = components.get("CompletionRequest")
    if completion is not None:
        prompt_not_empty = {
            "properties": {"prompt": {"minLength": 1, "items": {"type": "string", "minLength": 1}}}
        }
        if fim:
            suffix_given = {
                "required": ["suffix"],
                "properties": {"suffix": {"type": "string", "minLength": 1}},
            }
            completion["anyOf"] = [prompt_not_empty, suffix_given]
        else:
            completion["allOf"] = [prompt_not_empty]
    for path, item in schema.get("paths", {}).items():
        for operation in item.values():
            responses = operation.get("responses", {})
            responses.pop("422", None)
            if path in STREAMED_ROUTES and "200" in responses:
                content = responses["200"].setdefault("content", {})
                # One event's shape (OpenAPI 3.1 has no itemSchema; tools read `schema` so).
                content["text/event-stream"] = {
                    "schema": {
                        "type": "object",
                        "required": ["data"],
                        "properties": {
                            "data": {
                                "type": "string",
                                "contentMediaType": "application/json",
                                "description": "A chunk as JSON (or an in-band error), and "
                                "finally the literal `[DONE]`.",
                            }
                        },
                        "description": "Server-sent events when the request has `stream: true`.",
                    }
                }
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
