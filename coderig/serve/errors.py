"""OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code"}}`` with the right status.

Every failure a client can cause maps to a 4xx with a message that names the field; an
unexpected failure is a 500 with no traceback in the body (it goes to the log).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("coderig.serve")

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    499: "cancelled",
    500: "server_error",
    502: "upstream_error",
    501: "not_implemented",
    503: "service_unavailable",
    504: "timeout_error",
}


class OpenAIError(Exception):
    """Raise anywhere in a request to answer with this status and OpenAI's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _TYPE_BY_STATUS.get(status, "invalid_request_error")
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def validation_error(exc: RequestValidationError) -> OpenAIError:
    """The first problem pydantic found, phrased for a human, with the field as ``param``."""
    problems = exc.errors()
    if not problems:
        return OpenAIError(400, "invalid request body", code="invalid_request")
    first = problems[0]
    kind = first.get("type", "")
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    if kind == "json_invalid":
        detail = first.get("ctx", {}).get("error", "")
        return OpenAIError(
            400,
            f"request body is not valid JSON ({detail})".replace(" ()", ""),
            code="invalid_json",
        )
    if kind in {"model_attributes_type", "dict_type"} and not loc:
        return OpenAIError(400, "request body must be a JSON object", code="invalid_json")
    if kind == "missing" and not loc:
        return OpenAIError(400, "request body is empty; send a JSON object", code="invalid_json")
    param = ".".join(_strip_union_tags(loc)) or None
    message = first.get("msg", "invalid value")
    message = message.removeprefix("Value error, ")
    if param:
        message = f"{param}: {message}"
    code = "missing_required_parameter" if kind == "missing" else "invalid_value"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        code = "invalid_type"
    return OpenAIError(400, message, param=param, code=code)


def _strip_union_tags(loc: list[str]) -> list[str]:
    """pydantic puts the tried union member in the path (``stop.str``): drop it."""
    tags = {
        "str",
        "int",
        "float",
        "bool",
        "list[str]",
        "list[TextPart]",
        "function-after[_stop_list(), union[str,list[str]]]",
    }
    return [
        part for part in loc if part not in tags and not part.startswith(("function-", "list["))
    ]


def request_error(request: Request, exc: RequestValidationError) -> OpenAIError:
    """The problem with a request body (415 for non-JSON), for every API's error shape."""
    content_type = request.headers.get("content-type", "application/json")
    if "json" not in content_type.split(";")[0]:
        return OpenAIError(
            415,
            f"Content-Type is {content_type!r}; send the body as application/json",
            code="unsupported_media_type",
        )
    return validation_error(exc)


def install_error_handlers(app: FastAPI) -> None:
    """Make every error the app can produce OpenAI-shaped."""

    @app.exception_handler(OpenAIError)
    async def _openai_error(_: Request, exc: OpenAIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return request_error(request, exc).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 404:
            message = "no such route; see /docs for the API"
        elif exc.status_code == 405:
            message = "method not allowed on this route"
        return OpenAIError(
            exc.status_code, message, headers=getattr(exc, "headers", None)
        ).response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return OpenAIError(500, "internal server error", code="internal_error").response()
