"""Each editor API answers errors in its own shape, without touching the OpenAI routes' handlers.

A router built with :func:`api_route_class` catches, inside its own routes, the two exceptions
the app-wide handlers would otherwise turn into OpenAI's ``{"error": {...}}``: request validation
errors (bad JSON, wrong types) and :class:`~coderig.serve.errors.OpenAIError` (auth, limits,
replica failures). The message is phrased once (``validation_error``) and rendered per API.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute

from coderig.serve.auth import require_key
from coderig.serve.errors import OpenAIError, request_error

# status, message, the OpenAI-style code ("invalid_json", "context_length_exceeded"...), headers
ErrorRenderer = Callable[[int, str, str | None, dict[str, str]], Response]


def api_route_class(render: ErrorRenderer) -> type[APIRoute]:
    """An APIRoute class whose errors are rendered by ``render``."""

    class EditorAPIRoute(APIRoute):
        def get_route_handler(self):
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                try:
                    return await handler(request)
                except RequestValidationError as exc:
                    error = request_error(request, exc)
                except OpenAIError as exc:
                    error = exc
                return render(error.status, error.message, error.code, error.headers)

            return guarded

    return EditorAPIRoute


def editor_router(render: ErrorRenderer, tag: str) -> APIRouter:
    """A router for one editor API: its routes need an API key, answer errors as ``render``
    shapes them, and stay out of the OpenAPI schema (they are that editor's API, not ours)."""
    return APIRouter(
        dependencies=[Depends(require_key)],
        route_class=api_route_class(render),
        tags=[tag],
        include_in_schema=False,
    )


def tabby_error(status: int, message: str, code: str | None, headers: dict[str, str]) -> Response:
    """Tabby's server (axum) answers rejected bodies in plain text: 400 for JSON that does not
    parse, 422 for JSON of the wrong shape, 415 without a JSON content type."""
    if status == 400 and code == "invalid_json" and "JSON object" not in message:
        message = f"Failed to parse the request body as JSON: {message}"
    elif status == 400 and code in {"invalid_json", "invalid_type", "invalid_value"} | {
        "missing_required_parameter"
    }:
        status = 422
        message = f"Failed to deserialize the JSON body into the target type: {message}"
    elif status == 415:
        message = "Expected request with `Content-Type: application/json`"
    return PlainTextResponse(message, status_code=status, headers=headers)


_LLAMA_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    501: "not_supported_error",
    503: "unavailable_error",
}


def llamacpp_error(
    status: int, message: str, code: str | None, headers: dict[str, str]
) -> Response:
    """llama.cpp server's ``{"error": {"code", "message", "type"}}``."""
    body = llamacpp_error_body(status, message, code)
    return JSONResponse(body, status_code=status, headers=headers)


def llamacpp_error_body(status: int, message: str, code: str | None) -> dict:
    """The error object llama.cpp answers, also sent in-band in an ``/infill`` stream."""
    kind = _LLAMA_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    if code == "context_length_exceeded":
        kind = "exceed_context_size_error"
    if status == 429:
        kind = "unavailable_error"
    return {"error": {"code": status, "message": message, "type": kind}}


def ollama_error(status: int, message: str, code: str | None, headers: dict[str, str]) -> Response:
    """Ollama's ``{"error": "..."}``."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)
