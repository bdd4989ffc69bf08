"""The prompt for an editor completion: :class:`EditorPromptBuilder` puts context from other
files (declarations, snippets, ``input_extra`` chunks, the clipboard) ahead of the code at the
cursor as comments, in an order that stays the same across requests so the replica's prefix cache
is reused, and trims the code to fit ``--max-model-len`` as llama.cpp does for ``/infill``. See
docs/architecture.md, section 5.4 (editor prompts).
"""

from __future__ import annotations

from dataclasses import dataclass

from coderig.serve.auth import current_flow
from coderig.serve.editors.window import MAX_DROPPED_SHARE, StableWindows
from coderig.serve.errors import OpenAIError
from coderig.serve.languages import Language
from coderig.serve.prompts import RenderedPrompt

# At most this many prompt tokens of context from other files (Tabby allows ~768 characters).
DEFAULT_CONTEXT_TOKENS = 1024
# FIM markers and the BOS token, kept free when fitting the code.
TEMPLATE_MARGIN = 16

KIND_PRIORITY = ("declaration", "changed", "opened", "extra", "clipboard")
KIND_ORDER = ("clipboard", "opened", "extra", "declaration", "changed")


@dataclass(frozen=True)
class ContextSnippet:
    filepath: str
    body: str
    kind: str  # one of KIND_PRIORITY


@dataclass
class EditorPrompt:
    rendered: RenderedPrompt
    prefix: str  # the code before the cursor that was kept
    suffix: str | None  # the code after the cursor that was kept
    snippets: list[ContextSnippet]  # the context that made it into the prompt
    truncated: bool  # code was cut to fit the context length


def render_snippets(snippets: list[ContextSnippet], language: Language | None) -> str:
    """The comment block for ``snippets``, in stable order; empty when there are none."""
    if not snippets:
        return ""
    ordered = sorted(snippets, key=lambda s: (KIND_ORDER.index(s.kind), s.filepath, s.body))
    blocks = []
    for snippet in ordered:
        body = snippet.body.rstrip("\n")
        if language is not None:
            blocks.append(language.comment(f"Path: {snippet.filepath}\n{body}"))
        else:
            # No comment syntax known: llama.cpp's plain separator for extra context.
            blocks.append(f"--- snippet: {snippet.filepath} ---\n{body}")
    return "\n".join(blocks) + "\n"


class EditorPromptBuilder:
    """Builds editor prompts with the gateway's tokenizer and FIM template."""

    def __init__(
        self,
        gateway,
        context_tokens: int = DEFAULT_CONTEXT_TOKENS,
        window_lines: int = 0,
        window_anchor: str = "developer",
        window_max_drop: float = MAX_DROPPED_SHARE,
    ) -> None:
        self.gateway = gateway
        self.context_tokens = context_tokens
        # Where the code window starts (editors.window); ``window_lines`` 0 = as it came.
        self.windows = StableWindows(
            window_lines, window_max_drop, per_developer=window_anchor == "developer"
        )

    @classmethod
    def for_gateway(cls, gateway) -> EditorPromptBuilder:
        """The builder the editor APIs share, with the gateway's ``--stable-window-*``."""
        settings = gateway.settings
        return cls(
            gateway,
            window_lines=settings.stable_window_lines,
            window_anchor=settings.stable_window_anchor,
            window_max_drop=settings.stable_window_max_drop,
        )

    def count(self, text: str) -> int:
        return len(self.gateway.tokenizer.encode(text)) if text else 0

    def build(
        self,
        *,
        prefix: str,
        suffix: str | None,
        middle: str = "",
        snippets: list[ContextSnippet] = (),
        language: Language | None = None,
        reserve: int,
        user: str | None = None,
    ) -> EditorPrompt:
        """The prompt, leaving ``reserve`` tokens for the completion (``user``: the request's
        own user field, which names the developer when there is no key)."""
        room = self.gateway.settings.max_model_len - reserve - TEMPLATE_MARGIN
        prefix, suffix, truncated = self._fit_code(prefix, suffix, middle, room)
        prefix = self.windows.start(prefix, current_flow(user))
        code_tokens = self.count(prefix) + self.count(suffix or "") + self.count(middle)
        chosen = self._choose(list(snippets), language, room - code_tokens)
        block = render_snippets(chosen, language)
        rendered = self.gateway.prompts.completion(block + prefix, suffix)
        if middle:
            text = rendered.text + middle
            rendered = RenderedPrompt(
                text, self.gateway.tokenizer.count_prompt(text), rendered.stop, rendered.fim
            )
        return EditorPrompt(rendered, prefix, suffix, chosen, truncated)

    def raw(self, text: str, *, reserve: int) -> EditorPrompt:
        """A prompt the client already formatted (Ollama's ``raw``), sent as it is. When it
        carries the served model's FIM markers, that family's stop tokens apply."""
        if not text:
            raise OpenAIError(400, "prompt must not be empty", code="empty_prompt")
        fim = self.gateway.fim_template
        stop = list(fim.stop) if fim and all(m in text for m in fim.markers) else []
        rendered = RenderedPrompt(text, self.gateway.tokenizer.count_prompt(text), stop, None)
        return EditorPrompt(rendered, text, None, [], False)

    def _choose(
        self, snippets: list[ContextSnippet], language: Language | None, room: int
    ) -> list[ContextSnippet]:
        budget = min(self.context_tokens, room)
        chosen: list[ContextSnippet] = []
        used = 0
        seen: set[tuple[str, str]] = set()
        for snippet in sorted(snippets, key=lambda s: KIND_PRIORITY.index(s.kind)):
            key = (snippet.filepath, snippet.body)
            if not snippet.body.strip() or key in seen:
                continue
            cost = self.count(render_snippets([snippet], language))
            if used + cost > budget:
                continue  # a smaller one further down may still fit
            seen.add(key)
            chosen.append(snippet)
            used += cost
        return chosen

    def _fit_code(
        self, prefix: str, suffix: str | None, middle: str, room: int
    ) -> tuple[str, str | None, bool]:
        prefix_tokens = self.count(prefix)
        suffix_tokens = self.count(suffix or "")
        middle_tokens = self.count(middle)
        if prefix_tokens + suffix_tokens + middle_tokens <= room:
            return prefix, suffix, False
        truncated = False
        if suffix and suffix_tokens > room // 4:
            suffix = self._keep_lines(suffix, room // 4, from_start=True)
            suffix_tokens = self.count(suffix)
            truncated = True
        prefix_room = max(0, room - suffix_tokens - middle_tokens)
        if prefix_tokens > prefix_room:
            prefix = self._keep_lines(prefix, prefix_room, from_start=False)
            truncated = True
        return prefix, suffix, truncated

    def _keep_lines(self, text: str, budget: int, *, from_start: bool) -> str:
        """Whole lines from one end of ``text`` within ``budget`` tokens (counted per line)."""
        lines = text.splitlines(keepends=True)
        if not from_start:
            lines.reverse()
        kept: list[str] = []
        used = 0
        for line in lines:
            cost = self.count(line)
            if used + cost > budget:
                break
            kept.append(line)
            used += cost
        if not from_start:
            kept.reverse()
        return "".join(kept)
