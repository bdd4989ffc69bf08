"""OpenAI request and response shapes, as pydantic models.

Requests are validated strictly (``"5"`` is not an integer) so a client bug shows up as a 400
naming the field, not as a surprising completion. Fields OpenAI defines but coderig cannot honour
(``n > 1``, ``logprobs``, ``echo``...) are accepted only at their neutral value and otherwise
rejected with a message, rather than silently ignored. Unknown fields are ignored, as vLLM does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

MAX_STOP_SEQUENCES = 16
# JSON-schema constraints for fields accepted only at their neutral value (the validators below
# give the friendlier message; these make the OpenAPI document say the same thing).
ONLY_ONE = {"minimum": 1, "maximum": 1}
ONLY_FALSE = {"const": False}
ONLY_NULL = {"type": "null"}


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _integral_floats(cls, data: Any) -> Any:
        """JSON has one number type, and JSON Schema calls 200.0 an integer: accept it as 200
        (strict mode would refuse it, as it rightly refuses "200" and 200.5)."""
        if not isinstance(data, dict):
            return data
        fixed = None
        for name, field in cls.model_fields.items():
            value = data.get(name)
            if isinstance(value, float) and value.is_integer() and _is_int_field(field.annotation):
                fixed = fixed if fixed is not None else dict(data)
                fixed[name] = int(value)
        return fixed if fixed is not None else data

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        # JSON may escape a lone surrogate ("\ud800"): Python decodes it, but it is not text
        # and would fail later in the tokenizer, so refuse it here with a 400.
        where = surrogate_path(data)
        if where is not None:
            raise ValueError(f"{where or 'body'} contains an unpaired UTF-16 surrogate")
        return data


def _is_int_field(annotation: Any) -> bool:
    if annotation is int:
        return True
    return int in getattr(annotation, "__args__", ())


def surrogate_path(value: Any, path: str = "", *, keys: bool = False) -> str | None:
    """The path of the first string in ``value`` with an unpaired UTF-16 surrogate, or None;
    ``keys`` also looks at dictionary keys (the editor APIs forward theirs)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = surrogate_path(key, path) if keys and isinstance(key, str) else None
        if found is None:
            found = surrogate_path(item, f"{path}.{key}" if path else str(key), keys=keys)
        if found is not None:
            return found
    return None


class StreamOptions(_Request):
    include_usage: bool = False


class SamplingFields(_Request):
    """Sampling fields shared by /v1/completions and /v1/chat/completions."""

    model: str | None = Field(default=None, description="Served model name (see /v1/models).")
    max_tokens: int | None = Field(
        default=None, ge=1, description="Tokens to generate at most (default 128)."
    )
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0, description="llama.cpp/vLLM extension.")
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    stop: str | list[str] | None = Field(
        default=None,
        description="Up to 16 stop sequences.",
        json_schema_extra={
            "minLength": 1,
            "maxItems": MAX_STOP_SEQUENCES,
            "items": {"type": "string", "minLength": 1},
        },
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    # llama.cpp seeds are 32-bit; bounds exactly representable in JSON numbers.
    seed: int | None = Field(default=None, ge=-(2**31), le=2**32 - 1)
    n: int = Field(
        default=1,
        description="Only 1 is supported.",
        json_schema_extra=ONLY_ONE,
    )
    user: str | None = Field(default=None, max_length=256)
    min_tokens: int | None = Field(default=None, ge=0, description="vLLM extension.")
    ignore_eos: bool = Field(default=False, description="vLLM extension: generate max_tokens.")

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str] | None:
        if value is None:
            return None
        stops = [value] if isinstance(value, str) else value
        if len(stops) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty strings")
        return stops

    @field_validator("n")
    @classmethod
    def _only_one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError("only n=1 is supported: send one request per completion")
        return value


class CompletionRequest(SamplingFields):
    """POST /v1/completions. ``suffix`` makes it a fill-in-the-middle request."""

    prompt: str | list[str] = Field(
        description="The code before the cursor (one string, or a list of exactly one).",
        json_schema_extra={"minItems": 1, "maxItems": 1},
    )
    suffix: str | None = Field(default=None, description="The code after the cursor (FIM).")
    echo: bool = Field(
        default=False,
        description="Not supported; must be false.",
        json_schema_extra=ONLY_FALSE,
    )
    logprobs: int | None = Field(
        default=None, description="Not supported; must be null.", json_schema_extra=ONLY_NULL
    )
    best_of: int | None = Field(
        default=None,
        description="Only 1 is supported.",
        json_schema_extra=ONLY_ONE,
    )
    # coderig extensions (editor post-processing, off unless asked for)
    stop_rules: bool | None = Field(
        default=None,
        description="coderig: end the completion at the end of the block (language-aware stop "
        "rules). Default off; on when `language` is given.",
    )
    language: str | None = Field(
        default=None, description="coderig: the file's language (VS Code id), for stop rules."
    )
    t_max_predict_ms: int | None = Field(
        default=None,
        ge=1,
        description="coderig: time budget in ms from the first token; generation ends at the "
        "next token once a newline was generated (llama.cpp semantics), finish_reason length.",
    )

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str:
        if isinstance(value, list):
            if len(value) != 1:
                raise ValueError("send exactly one prompt string per request")
            value = value[0]
        return value

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, value: bool) -> bool:
        if value:
            raise ValueError("echo is not supported")
        return value

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: int | None) -> int | None:
        if value is not None:
            raise ValueError("logprobs are not supported")
        return value

    @field_validator("best_of")
    @classmethod
    def _best_of_one(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise ValueError("only best_of=1 is supported")
        return value


class TextPart(_Request):
    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ResponseFormat(_Request):
    type: Literal["text"] = "text"


class ChatCompletionRequest(SamplingFields):
    """POST /v1/chat/completions, rendered with the model's own chat template."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = Field(
        default=False,
        description="Not supported; must be false.",
        json_schema_extra=ONLY_FALSE,
    )
    response_format: ResponseFormat | None = None
    tools: list[Any] | None = Field(
        default=None, description="Not supported; null or empty.", json_schema_extra={"maxItems": 0}
    )

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: bool) -> bool:
        if value:
            raise ValueError("logprobs are not supported")
        return value

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, value: list[Any] | None) -> list[Any] | None:
        if value:
            raise ValueError("tool calling is not supported by this server")
        return value


# --- responses (documented in the OpenAPI schema; built as plain dicts on the hot path) ---


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "coderig"
    max_model_len: int | None = None
    fim_template: str | None = None
    # As vLLM lists LoRA adapters: the adapter's source, and the base model it applies to.
    root: str | None = None
    parent: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
