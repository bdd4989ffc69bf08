"""Stop rules on the generated text, fed in pieces the way a replica streams tokens."""

from __future__ import annotations

import asyncio

import pytest

from coderig.serve.generate import Delta, Finished, GenerationRequest
from coderig.serve.languages import load_languages
from coderig.serve.metrics import GatewayMetrics
from coderig.serve.postprocess import EditorRules, LineStopper, StopReport, apply_editor_rules

LANGS = load_languages()
PY = LANGS.by_id("python")


def run(rules: EditorRules, pieces: list[str]) -> tuple[str, str | None, int]:
    """Feed ``pieces``; return the text released, the rule that fired, and pieces consumed."""
    stopper = LineStopper(rules)
    out = []
    for count, piece in enumerate(pieces, 1):
        text, rule = stopper.feed(piece)
        out.append(text)
        if rule:
            return "".join(out), rule, count
    tail, rule = stopper.flush()
    return "".join(out) + tail, rule, len(pieces)


def tokens(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def test_blank_line_ends_the_completion_and_the_rest_is_never_fed():
    rules = EditorRules.for_cursor("def add(a, b):\n    ", None, language=PY)
    generated = "return a + b\n\nprint(add(1, 2))\n"
    text, rule, consumed = run(rules, tokens(generated))
    assert (text, rule) == ("return a + b", "blank_line")
    assert consumed < len(tokens(generated))


def test_dedent_below_the_cursor_line_ends_the_block():
    rules = EditorRules.for_cursor("    for x in xs:\n        ", None, language=PY)
    text, rule, _ = run(rules, tokens("total += x\n        n += 1\n    return total\n"))
    assert (text, rule) == ("total += x\n        n += 1", "dedent")


def test_n_indent_overrides_the_cursor_indentation():
    rules = EditorRules.for_cursor("", None, min_indent=4)
    text, rule, _ = run(rules, ["a = 1\n", "    b = 2\n", "  c = 3\n"])
    assert (text, rule) == ("a = 1\n    b = 2", "dedent")


def test_a_new_top_level_definition_ends_the_completion():
    rules = EditorRules.for_cursor("import os\n", None, language=PY, rules=frozenset({"top_level"}))
    text, rule, _ = run(rules, ["def main():\n", "    pass\n", "def other():\n", "    pass\n"])
    assert (text, rule) == ("def main():\n    pass", "top_level")


def test_top_level_waits_for_the_whole_word_on_a_partial_line():
    rules = EditorRules.for_cursor("x = 1\n", None, language=PY, rules=frozenset({"top_level"}))
    text, rule, _ = run(rules, ["y = 2\n", "def", "ault = 3\n"])
    assert (text, rule) == ("y = 2\ndefault = 3\n", None)


def test_without_a_language_there_is_no_top_level_rule():
    rules = EditorRules.for_cursor("x = 1\n", None, rules=frozenset({"top_level"}))
    assert run(rules, ["y = 2\n", "def f(): pass\n"])[1] is None


def test_a_line_that_repeats_the_code_after_the_cursor_is_cut():
    suffix = "\n    return result\n"
    rules = EditorRules.for_cursor("def f():\n    result = ", suffix, language=PY)
    text, rule, _ = run(rules, ["compute()\n", "    return result\n", "\n"])
    assert (text, rule) == ("compute()", "suffix_repeat")


def test_an_ending_that_repeats_the_rest_of_the_cursor_line_is_trimmed():
    rules = EditorRules.for_cursor("print(", ")\nx = 1\n", language=PY)
    text, rule, _ = run(rules, ["'hello'", ")"])
    assert (text, rule) == ("'hello'", "suffix_repeat")


def test_the_first_line_of_code_is_never_cut_by_blank_dedent_or_top_level():
    rules = EditorRules.for_cursor("        x = ", None, language=PY)
    assert run(rules, ["1"]) == ("1", None, 1)
    rules = EditorRules.for_cursor("", None, language=PY)
    assert run(rules, ["\n", "def f():\n", "    return 1\n"])[0] == "\ndef f():\n    return 1\n"


def test_no_rules_is_a_pass_through():
    rules = EditorRules.for_cursor("x", None, rules=frozenset())
    assert run(rules, ["a\n\n", "b"]) == ("a\n\nb", None, 2)


# --- on an event stream, with cancellation, metrics and the time budget -----------------------


class FakeUpstream:
    """An async iterator of events that records whether it was closed, like Generator.run."""

    def __init__(self, pieces: list[str], delay: float = 0.0) -> None:
        self.pieces = pieces
        self.delay = delay
        self.sent = 0
        self.closed = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.closed:
            raise StopAsyncIteration
        if self.sent < len(self.pieces):
            await asyncio.sleep(self.delay)
            self.sent += 1
            return Delta(self.pieces[self.sent - 1])
        if self.sent == len(self.pieces):
            self.sent += 1
            return Finished("length", 5, len(self.pieces))
        raise StopAsyncIteration

    async def aclose(self):
        self.closed = True


def collect(upstream, rules, max_tokens=100):
    metrics = GatewayMetrics()
    gen = GenerationRequest("test", "p", 5, max_tokens, {})
    report = StopReport()

    async def go():
        return [
            event
            async for event in apply_editor_rules(
                upstream, gen, rules, metrics=metrics, count_tokens=len, report=report
            )
        ]

    return asyncio.run(go()), metrics, report


def sample(metrics, name, **labels):
    value = metrics.registry.get_sample_value(name, labels or None)
    return value or 0.0


def test_a_fired_rule_closes_the_upstream_and_counts_the_saved_tokens():
    upstream = FakeUpstream(["return 1\n", "\n", "x = 2\n"] + ["y\n"] * 20)
    rules = EditorRules.for_cursor("def f():\n    ", None, language=PY)
    events, metrics, report = collect(upstream, rules, max_tokens=100)
    assert upstream.closed and upstream.sent == 2
    assert "".join(e.text for e in events if isinstance(e, Delta)) == "return 1"
    assert events[-1].finish_reason == "stop"
    generated = events[-1].completion_tokens
    assert report.rule == "blank_line" and report.tokens_saved == 100 - generated
    assert sample(metrics, "coderig_stop_rule_hits_total", rule="blank_line", language="python")
    assert sample(metrics, "coderig_tokens_saved_total") == 100 - generated


def test_time_budget_keeps_the_text_and_reports_length_once_a_newline_came():
    upstream = FakeUpstream(["a = 1", "\n", "b = 2", "\n", "c = 3"] + ["\nd"] * 50, delay=0.02)
    rules = EditorRules.for_cursor("", None, rules=frozenset(), time_budget_ms=60)
    events, metrics, report = collect(upstream, rules)
    text = "".join(e.text for e in events if isinstance(e, Delta))
    assert upstream.closed and upstream.sent < 40
    assert text.startswith("a = 1\n") and events[-1].finish_reason == "length"
    assert report.rule == "time_budget"
    assert sample(metrics, "coderig_stop_rule_hits_total", rule="time_budget", language="unknown")


def test_time_budget_waits_for_the_first_newline():
    upstream = FakeUpstream(["x"] * 10 + ["\n", "y"], delay=0.01)
    rules = EditorRules.for_cursor("", None, rules=frozenset(), time_budget_ms=1)
    events, _, _ = collect(upstream, rules)
    text = "".join(e.text for e in events if isinstance(e, Delta))
    assert text.startswith("x" * 10 + "\n")


@pytest.mark.parametrize(
    ("language", "path", "code", "expected"),
    [
        ("python", None, "", "python"),
        ("typescriptreact", None, "", "typescript"),
        (None, "src/lib.rs", "", "rust"),
        (None, None, "import os\nimport sys\n\ndef main():\n", "python"),
        (None, None, "package main\n\nfunc main() {\n\tx := 1\n", "go"),
        (None, None, "hello", None),
    ],
)
def test_language_from_field_then_path_then_detection(language, path, code, expected):
    found, _ = LANGS.resolve(language=language, path=path, code=code)
    assert (found.id if found else None) == expected
