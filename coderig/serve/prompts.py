"""From a client request to the exact prompt the engine will see, with its token count.

This is where the gateway's rules live: fill-in-the-middle rendering, chat templates, the
context-length check (prompt + max_tokens must fit ``--max-model-len``) and the max-token cap,
each failing with a 400 that says the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from coderig.serve.errors import OpenAIError
from coderig.serve.fim import FIM_PREFIX_ONLY, FimTemplate
from coderig.serve.schemas import ChatMessage
from coderig.serve.tokenizer import Tokenizer


@dataclass
class RenderedPrompt:
    text: str
    tokens: int
    stop: list[str]
    fim: str | None  # X-Coderig-FIM header value, None when no suffix was sent


class PromptBuilder:
    def __init__(
        self,
        tokenizer: Tokenizer,
        fim_template: FimTemplate | None,
        *,
        max_model_len: int,
        max_tokens_limit: int,
    ) -> None:
        self.tokenizer = tokenizer
        self.fim_template = fim_template
        self.max_model_len = max_model_len
        self.max_tokens_limit = max_tokens_limit
        self._chat = (
            Jinja2ChatFormatter(
                tokenizer.chat_template,
                eos_token=tokenizer.eos_token,
                bos_token=tokenizer.bos_token,
            )
            if tokenizer.chat_template
            else None
        )

    def completion(self, prompt: str, suffix: str | None) -> RenderedPrompt:
        if not prompt and not suffix:
            raise OpenAIError(400, "prompt must not be empty", param="prompt", code="empty_prompt")
        if suffix is None:
            return RenderedPrompt(prompt, self.tokenizer.count_prompt(prompt), [], None)
        if self.fim_template is None:
            # No FIM tokens: complete from the prefix, and say so (X-Coderig-FIM: prefix-only).
            if not prompt:
                raise OpenAIError(
                    400,
                    "this model has no fill-in-the-middle support, so it needs a non-empty prompt",
                    param="prompt",
                    code="fim_unsupported",
                )
            return RenderedPrompt(prompt, self.tokenizer.count_prompt(prompt), [], FIM_PREFIX_ONLY)
        text = self.fim_template.render(prompt, suffix)
        return RenderedPrompt(
            text,
            self.tokenizer.count_prompt(text),
            list(self.fim_template.stop),
            self.fim_template.id,
        )

    def chat(self, messages: list[ChatMessage]) -> RenderedPrompt:
        if self._chat is None:
            raise OpenAIError(
                400,
                "this model has no chat template; use /v1/completions",
                code="chat_unsupported",
            )
        rendered = self._chat(messages=[{"role": _role(m), "content": m.text()} for m in messages])
        stop = (
            rendered.stop
            if isinstance(rendered.stop, list)
            else [rendered.stop]
            if rendered.stop
            else []
        )
        return RenderedPrompt(
            rendered.prompt, self.tokenizer.count_prompt(rendered.prompt), stop, None
        )

    def max_tokens(self, requested: int | None, prompt_tokens: int, default: int | None) -> int:
        """The completion budget, or a 400 that gives both numbers when it cannot fit."""
        room = self.max_model_len - prompt_tokens
        if room < 1:
            raise OpenAIError(
                400,
                f"This model's maximum context length is {self.max_model_len} tokens, but the "
                f"prompt alone is {prompt_tokens} tokens. Shorten the prompt.",
                param="prompt",
                code="context_length_exceeded",
            )
        if requested is None:
            return min(default or room, room, self.max_tokens_limit)
        if requested > self.max_tokens_limit:
            raise OpenAIError(
                400,
                f"max_tokens is {requested}, above this server's limit of "
                f"{self.max_tokens_limit} (--max-tokens-limit)",
                param="max_tokens",
                code="max_tokens_too_large",
            )
        if prompt_tokens + requested > self.max_model_len:
            raise OpenAIError(
                400,
                f"This model's maximum context length is {self.max_model_len} tokens. However, "
                f"you requested {prompt_tokens + requested} tokens ({prompt_tokens} in the prompt, "
                f"{requested} for the completion). Reduce the prompt or max_tokens.",
                param="max_tokens",
                code="context_length_exceeded",
            )
        return requested


def _role(message: ChatMessage) -> str:
    # Chat templates know "system"; OpenAI's newer "developer" role means the same.
    return "system" if message.role == "developer" else message.role
