"""OpenAI's API: ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions``.

The routes turn a request into a :class:`~coderig.serve.generate.GenerationRequest` and hand it,
with their encoder, to :func:`~coderig.serve.respond.respond`. Editor post-processing is opt-in
here (:mod:`coderig.serve.editors.openai`), so a completion is exactly what OpenAI's API returns
unless the client asks for more. The editor APIs (Tabby, ``/infill``, Ollama) live beside this
module in :mod:`coderig.serve.editors`.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from coderig.serve.auth import SESSION_HEADER, require_key
from coderig.serve.editors.openai import openai_editor_rules
from coderig.serve.errors import OpenAIError
from coderig.serve.fim import FIM_HEADER
from coderig.serve.generate import Finished, GenerationRequest
from coderig.serve.postprocess import apply_editor_rules
from coderig.serve.respond import Encoder, respond, sse_data
from coderig.serve.schemas import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    ErrorResponse,
    ModelList,
)

ERROR_RESPONSES = {
    400: {"model": ErrorResponse, "description": "Invalid request"},
    401: {"model": ErrorResponse, "description": "Missing or wrong API key"},
    429: {"model": ErrorResponse, "description": "Rate limited or overloaded; see Retry-After"},
    404: {"model": ErrorResponse, "description": "Unknown model"},
    413: {"model": ErrorResponse, "description": "Body too large"},
    503: {"model": ErrorResponse, "description": "No replica available; retry"},
}


def openai_router(gateway, route_class: type[APIRoute] = APIRoute) -> APIRouter:
    """OpenAI's routes; every one needs a developer key when keys are configured.
    ``route_class`` lets another API share a path (Tabby's body on ``/v1/completions``)."""
    v1 = APIRouter(dependencies=[Depends(require_key)], route_class=route_class)

    @v1.get("/v1/models", response_model=ModelList, tags=["openai"])
    async def models() -> dict:
        return {
            "object": "list",
            "data": [
                {
                    "id": gateway.model_name,
                    "object": "model",
                    "created": gateway.created,
                    "owned_by": "coderig",
                    "max_model_len": gateway.settings.max_model_len,
                    "fim_template": gateway.fim_template.id if gateway.fim_template else None,
                },
                *(
                    {
                        "id": name,
                        "object": "model",
                        "created": gateway.created,
                        "owned_by": "coderig",
                        "root": source,
                        "parent": gateway.model_name,
                        "max_model_len": gateway.settings.max_model_len,
                        "fim_template": gateway.fim_template.id if gateway.fim_template else None,
                    }
                    for name, source in gateway.adapters.items()
                ),
            ],
        }

    @v1.post(
        "/v1/completions",
        tags=["openai"],
        responses={200: {"model": CompletionResponse}, **ERROR_RESPONSES},
    )
    async def completions(body: CompletionRequest, request: Request) -> Response:
        gateway.check_model(body.model)
        rendered = gateway.prompts.completion(body.prompt, body.suffix)  # type: ignore[arg-type]
        gen = gateway.generation_request(
            "completions",
            body,
            rendered,
            body.max_tokens,
            gateway.settings.default_max_tokens,
            session=request.headers.get(SESSION_HEADER),
        )
        headers = {FIM_HEADER: rendered.fim} if rendered.fim else {}
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        rules = openai_editor_rules(body, gateway.settings)
        events = gateway.generator.run(gen)
        if rules:
            events = apply_editor_rules(
                events,
                gen,
                rules,
                metrics=gateway.metrics,
                count_tokens=gateway.generator.count_tokens,
            )
        encoder = CompletionEncoder(gen, gen.model or gateway.model_name, include_usage, headers)
        return await respond(request, events, encoder, stream=body.stream)

    @v1.post(
        "/v1/chat/completions",
        tags=["openai"],
        responses={200: {"model": ChatCompletionResponse}, **ERROR_RESPONSES},
    )
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        gateway.check_model(body.model)
        rendered = gateway.prompts.chat(body.messages)
        requested = body.max_completion_tokens or body.max_tokens
        if body.max_completion_tokens and body.max_tokens:
            # Both given: the newer field wins, but neither may break the server's limit.
            gateway.prompts.max_tokens(body.max_tokens, 0, None)
        gen = gateway.generation_request(
            "chat", body, rendered, requested, None, session=request.headers.get(SESSION_HEADER)
        )
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        encoder = ChatEncoder(gen, gen.model or gateway.model_name, include_usage, {})
        return await respond(request, gateway.generator.run(gen), encoder, stream=body.stream)

    return v1


# --- encoders ---------------------------------------------------------------------------


class CompletionEncoder(Encoder):
    """``text_completion`` objects: SSE chunks, ``data: [DONE]``, or one JSON answer."""

    object = "text_completion"
    id_prefix = "cmpl"

    def __init__(
        self, gen: GenerationRequest, model: str, include_usage: bool, headers: dict[str, str]
    ) -> None:
        self.gen = gen
        self.model = model
        self.include_usage = include_usage
        self.headers = headers

    def stream_headers(self) -> dict[str, str]:
        return {**super().stream_headers(), **self.headers}

    def delta(self, text: str) -> bytes:
        return sse_data(self.chunk(text, None))

    def finish(self, done: Finished) -> bytes:
        last = sse_data(self.chunk("", done.finish_reason))
        return last + sse_data(self.usage_chunk(done.usage())) if self.include_usage else last

    def error(self, exc: OpenAIError) -> bytes:
        return sse_data(exc.body())

    def closing(self) -> bytes:
        return b"data: [DONE]\n\n"

    def whole(self, text: str, done: Finished) -> Response:
        return JSONResponse(self.answer(text, done), headers=self.headers)

    def chunk(self, text: str, finish_reason: str | None) -> dict:
        return {
            **self._envelope(self.object),
            "choices": [
                {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    def usage_chunk(self, usage: dict) -> dict:
        return {**self._envelope(self.object), "choices": [], "usage": usage}

    def answer(self, text: str, done: Finished) -> dict:
        body = self.chunk(text, done.finish_reason)
        body["usage"] = done.usage()
        return body

    def _envelope(self, object_: str) -> dict:
        gen = self.gen
        return {
            "id": f"{self.id_prefix}-{gen.id}",
            "object": object_,
            "created": gen.created,
            "model": self.model,
        }


class ChatEncoder(CompletionEncoder):
    """``chat.completion.chunk`` objects (a role chunk first), or one ``chat.completion``."""

    object = "chat.completion.chunk"
    id_prefix = "chatcmpl"

    def opening(self) -> bytes:
        chunk = self.chunk("", None)
        chunk["choices"][0]["delta"] = {"role": "assistant", "content": ""}
        return sse_data(chunk)

    def chunk(self, text: str, finish_reason: str | None) -> dict:
        delta = {"content": text} if text or finish_reason is None else {}
        return {
            **self._envelope(self.object),
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    def answer(self, text: str, done: Finished) -> dict:
        return {
            **self._envelope("chat.completion"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": done.finish_reason,
                }
            ],
            "usage": done.usage(),
        }
