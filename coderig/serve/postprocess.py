"""Editor post-processing on the token stream: language-aware stop rules (``blank_line``,
``dedent``, ``top_level``, ``suffix_repeat``) and llama.cpp's ``t_max_predict_ms`` time budget,
applied by :func:`apply_editor_rules`, which closes the upstream stream as soon as a rule says the
completion is over, so the replica stops writing text the editor would throw away. See
docs/architecture.md, section 5.7 (stop rules and the time budget).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace

from coderig.serve.generate import Delta, Event, Finished, GenerationRequest
from coderig.serve.languages import Language
from coderig.serve.metrics import GatewayMetrics

STOP_RULES = ("blank_line", "dedent", "top_level", "suffix_repeat")
TIME_BUDGET = "time_budget"


def indentation(line: str, tab_width: int = 4) -> int:
    """Columns of leading whitespace (a tab counts ``tab_width``)."""
    width = 0
    for char in line:
        if char == " ":
            width += 1
        elif char == "\t":
            width += tab_width
        else:
            break
    return width


@dataclass
class EditorRules:
    """What the post-processor knows about one completion request."""

    language: Language | None = None
    line_prefix: str = ""  # the cursor's line, up to the cursor
    suffix: str | None = None  # the code after the cursor
    rules: frozenset[str] = frozenset(STOP_RULES)
    min_indent: int | None = None  # dedent threshold; None: the cursor line's indentation
    time_budget_ms: int | None = None

    @classmethod
    def for_cursor(cls, prefix: str, suffix: str | None, **kwargs) -> EditorRules:
        """Rules for a completion at the end of ``prefix`` (the code before the cursor)."""
        return cls(line_prefix=prefix.rsplit("\n", 1)[-1], suffix=suffix, **kwargs)

    @property
    def language_label(self) -> str:
        return self.language.id if self.language else "unknown"

    def threshold(self) -> int:
        if self.min_indent is not None:
            return self.min_indent
        return indentation(self.line_prefix)

    def line_suffix(self) -> str:
        """The rest of the cursor's line, after the cursor."""
        return (self.suffix or "").split("\n", 1)[0]

    def next_suffix_line(self) -> str:
        """The first non-blank line after the cursor's line, stripped."""
        lines = (self.suffix or "").split("\n")[1:]
        return next((line.strip() for line in lines if line.strip()), "")


@dataclass
class LineStopper:
    """Feeds generated text through the stop rules; releases text only once it is judged."""

    rules: EditorRules
    current: str = ""  # the line being generated, not released yet
    held_newline: bool = False  # the newline before ``current``, not released yet
    line_index: int = 0  # 0 is the cursor's line
    has_content: bool = False  # some non-blank text was generated
    saw_newline: bool = False
    fired: str | None = None
    _enabled: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self._enabled = self.rules.rules

    @property
    def active(self) -> bool:
        return bool(self._enabled)

    def feed(self, text: str) -> tuple[str, str | None]:
        """Text that may go to the client now, and the rule that fired (generation is over)."""
        if self.fired:
            return "", self.fired
        if not self.active:
            self.saw_newline = self.saw_newline or "\n" in text
            return text, None
        released: list[str] = []
        for position, part in enumerate(text.split("\n")):
            if position > 0:
                self.saw_newline = True
                rule = self._judge_line(complete=True)
                if rule:
                    return self._fire(rule, released)
                released.append(("\n" if self.held_newline else "") + self.current)
                self.has_content = self.has_content or bool(self.current.strip())
                self.current = ""
                self.held_newline = True
                self.line_index += 1
            self.current += part
            rule = self._judge_line(complete=False)
            if rule:
                return self._fire(rule, released)
        return "".join(released), None

    def flush(self) -> tuple[str, str | None]:
        """At the end of generation: the held text (after the final checks), and a rule that
        cut it, if any."""
        if not self.active or self.fired:
            return "", None
        rule = self._judge_line(complete=True) if self.current else None
        if rule:
            self.fired = rule
            return "", rule
        tail = ("\n" if self.held_newline else "") + self.current
        self.current, self.held_newline = "", False
        trimmed = self._trim_line_suffix(tail)
        return trimmed, ("suffix_repeat" if trimmed != tail else None)

    def release_all(self) -> str:
        """Everything held, unjudged (the time budget keeps all generated text)."""
        tail = ("\n" if self.held_newline else "") + self.current
        self.current, self.held_newline = "", False
        return tail

    # --- the rules ---------------------------------------------------------------------

    def _fire(self, rule: str, released: list[str]) -> tuple[str, str]:
        self.fired = rule
        self.current, self.held_newline = "", False
        return "".join(released), rule

    def _judge_line(self, *, complete: bool) -> str | None:
        line = self.current
        enabled = self._enabled
        if self.line_index == 0 or not self.has_content:
            # The first line with code in it is the completion itself: only a repeat cuts it.
            if complete and "suffix_repeat" in enabled and self._repeats_suffix(line):
                return "suffix_repeat"
            return None
        if not line.strip():
            return "blank_line" if complete and "blank_line" in enabled else None
        if "dedent" in enabled and indentation(line) < self.rules.threshold():
            return "dedent"
        language = self.rules.language
        if "top_level" in enabled and language is not None:
            found = language.starts_top_level(line)
            # On a partial line, a match that reaches its end may still grow ("def" of "define").
            if found and (complete or found.end() < len(line)):
                return "top_level"
        if complete and "suffix_repeat" in enabled and self._repeats_suffix(line):
            return "suffix_repeat"
        return None

    def _repeats_suffix(self, line: str) -> bool:
        following = self.rules.next_suffix_line()
        if not following:
            return False
        whole = (self.rules.line_prefix + line) if self.line_index == 0 else line
        return whole.strip() == following

    def _trim_line_suffix(self, tail: str) -> str:
        """Drop a generated ending that repeats the rest of the cursor's line (``)``, ``"]``)."""
        if "suffix_repeat" not in self._enabled:
            return tail
        rest = self.rules.line_suffix().strip()
        if rest and tail.rstrip().endswith(rest):
            return tail.rstrip()[: -len(rest)]
        return tail


@dataclass
class StopReport:
    """What the post-processing did to one generation (for headers and logs)."""

    rule: str | None = None
    tokens_saved: int = 0
    language: str = "unknown"

    def headers(self) -> dict[str, str]:
        """``X-Coderig-Stop`` for a non-streamed answer a rule cut short; else none."""
        if not self.rule:
            return {}
        value = f"rule={self.rule}; language={self.language}; tokens_saved={self.tokens_saved}"
        return {"X-Coderig-Stop": value}


async def apply_editor_rules(
    events: AsyncIterator[Event],
    gen: GenerationRequest,
    rules: EditorRules,
    *,
    metrics: GatewayMetrics,
    count_tokens: Callable[[str], int],
    report: StopReport | None = None,
) -> AsyncIterator[Event]:
    """``events`` with the stop rules and the time budget applied; cancels upstream on a stop."""
    stopper = LineStopper(rules)
    report = report if report is not None else StopReport()
    report.language = rules.language_label
    budget = rules.time_budget_ms / 1000 if rules.time_budget_ms else None
    raw: list[str] = []
    first_at: float | None = None
    try:
        async for event in events:
            if isinstance(event, Finished):
                tail, rule = stopper.flush()
                if tail:
                    yield Delta(tail)
                if rule:
                    _count_hit(metrics, report, rule, 0)
                    event = replace(event, finish_reason="stop")
                yield event
                return
            raw.append(event.text)
            now = time.monotonic()
            first_at = first_at if first_at is not None else now
            text, rule = stopper.feed(event.text)
            if text:
                yield Delta(text)
            if rule:
                yield await _cut(events, gen, metrics, count_tokens, raw, report, rule, "stop")
                return
            if budget is not None and now - first_at >= budget and stopper.saw_newline:
                tail = stopper.release_all()
                if tail:
                    yield Delta(tail)
                yield await _cut(events, gen, metrics, count_tokens, raw, report, TIME_BUDGET)
                return
    finally:
        await events.aclose()


async def _cut(
    events: AsyncIterator[Event],
    gen: GenerationRequest,
    metrics: GatewayMetrics,
    count_tokens: Callable[[str], int],
    raw: list[str],
    report: StopReport,
    rule: str,
    finish_reason: str = "length",
) -> Finished:
    """Stop the upstream generation now and account for it as the generator would have."""
    # Tells the generator's cancellation accounting why it was closed (main's GenerationRequest
    # has this field; setting it is harmless where it does not).
    gen.cancel_reason = "time_budget" if rule == TIME_BUDGET else "stop_rule"
    await events.aclose()
    generated = max(len(raw), count_tokens("".join(raw)))
    saved = max(0, gen.max_tokens - generated)
    _count_hit(metrics, report, rule, saved)
    # The generator's own accounting never ran: it was closed before its last event.
    metrics.prompt_tokens.inc(gen.prompt_tokens)
    metrics.completion_tokens.inc(generated)
    metrics.request_duration.labels(gen.route).observe(time.monotonic() - gen.received)
    return Finished(finish_reason, gen.prompt_tokens, generated)


def _count_hit(metrics: GatewayMetrics, report: StopReport, rule: str, saved: int) -> None:
    report.rule = rule
    report.tokens_saved = saved
    metrics.stop_rule_hits.labels(rule, report.language).inc()
    if saved:
        metrics.stop_tokens_saved.inc(saved)
