"""Editor prompt assembly (context snippets, budget, truncation) and API helpers, on the
embedded model's real tokenizer."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from coderig.models import embedded_model_path
from coderig.serve.editors.infill import PrefixTracker, _select
from coderig.serve.editors.ollama import go_template, split_fim
from coderig.serve.editors.prompt import ContextSnippet, EditorPromptBuilder, render_snippets
from coderig.serve.fim import load_templates
from coderig.serve.languages import load_languages
from coderig.serve.prompts import PromptBuilder
from coderig.serve.tokenizer import GGUFTokenizer

PY = load_languages().by_id("python")


@pytest.fixture(scope="module")
def tokenizer():
    return GGUFTokenizer(embedded_model_path())


def builder(
    tokenizer, max_model_len=4096, context_tokens=1024, fim=None, **windows
) -> EditorPromptBuilder:
    settings = SimpleNamespace(max_model_len=max_model_len)
    prompts = PromptBuilder(tokenizer, fim, max_model_len=max_model_len, max_tokens_limit=2048)
    gateway = SimpleNamespace(settings=settings, tokenizer=tokenizer, prompts=prompts,
                              fim_template=fim)  # fmt: skip
    return EditorPromptBuilder(gateway, context_tokens=context_tokens, **windows)


SNIPPETS = [
    ContextSnippet("b.py", "B = 2", "changed"),
    ContextSnippet("a.py", "A = 1", "declaration"),
    ContextSnippet("c.py", "C = 3", "opened"),
]


def test_snippet_order_does_not_depend_on_the_order_they_arrive_in():
    assert render_snippets(SNIPPETS, PY) == render_snippets(list(reversed(SNIPPETS)), PY)
    block = render_snippets(SNIPPETS, PY)
    # Most stable kinds first: opened files, declarations, then changed files.
    assert block.index("c.py") < block.index("a.py") < block.index("b.py")
    assert block.startswith("# Path: c.py\n# C = 3\n")


def test_unknown_language_uses_plain_separators():
    assert render_snippets(SNIPPETS[:1], None) == "--- snippet: b.py ---\nB = 2\n"


def test_a_short_budget_keeps_the_most_useful_snippets(tokenizer):
    big = ContextSnippet("big.py", "x = 1\n" * 200, "opened")
    prompt = builder(tokenizer, context_tokens=40).build(
        prefix="print(", suffix=None, snippets=[big, *SNIPPETS], language=PY, reserve=16
    )
    kept = {snippet.filepath for snippet in prompt.snippets}
    assert kept == {"a.py", "b.py", "c.py"}  # the big one does not fit; the small ones do
    assert prompt.rendered.text.endswith("print(")


def test_code_too_long_for_the_context_keeps_the_end_of_the_prefix(tokenizer):
    prefix = "".join(f"line_{i} = {i}\n" for i in range(400)) + "total = "
    suffix = "".join(f"after_{i} = {i}\n" for i in range(400))
    prompt = builder(tokenizer, max_model_len=512).build(
        prefix=prefix, suffix=suffix, language=PY, reserve=64
    )
    assert prompt.truncated
    assert prompt.prefix.endswith("line_399 = 399\ntotal = ")
    assert not prompt.prefix.startswith("line_0 ")
    assert prompt.rendered.tokens + 64 <= 512


def test_split_fim_recovers_prefix_and_suffix_of_a_rendered_prompt():
    qwen = load_templates()["qwen"]
    assert split_fim(qwen.render("a(", ")\n"), qwen) == ("a(", ")\n")
    assert split_fim("no markers here", qwen) is None
    assert split_fim("anything", None) is None


def test_go_template_has_suffix_with_and_without_fim():
    assert ".Suffix" in go_template(None) and ".Prompt" in go_template(None)
    template = go_template(load_templates()["starcoder"])
    assert template.startswith("{{- if .Suffix }}<fim_prefix>{{ .Prompt }}<fim_suffix>")


def test_response_fields_lift_nested_values_under_their_path():
    answer = {"content": "x", "timings": {"predicted_n": 3}, "truncated": False}
    assert _select(answer, ["content", "timings/predicted_n", "missing"]) == {
        "content": "x",
        "timings/predicted_n": 3,
    }
    assert _select(answer, [""]) == {}
    assert _select(answer, None) == answer


def test_prefix_tracker_estimates_the_shared_prefix():
    tracker = PrefixTracker(size=2)
    assert tracker.cached([1, 2, 3]) == 0
    tracker.sent([1, 2, 3, 4])
    assert tracker.cached([1, 2, 9]) == 2


def test_editor_token_budgets_are_lowered_to_fit_not_refused(tokenizer):
    from coderig.serve.editors.common import generation_request

    built = builder(tokenizer, max_model_len=256)
    gateway = built.gateway
    gateway.prompts.max_tokens_limit = 32
    prompt = built.build(prefix="x = ", suffix=None, reserve=8)
    gen = generation_request(gateway, "t", prompt, max_tokens=10**6, default_max=16, sampling={})
    assert gen.max_tokens == 32
    gen = generation_request(gateway, "t", prompt, max_tokens=None, default_max=16, sampling={})
    assert gen.max_tokens == 16


def test_the_code_window_starts_at_its_anchor_line_when_asked(tokenizer):
    from coderig.serve.editors.window import stable_start

    prefix = "".join(f"value_{i} = {i * 7}\n" for i in range(40)) + "total = "
    plain = builder(tokenizer).build(prefix=prefix, suffix=None, reserve=16)
    assert plain.prefix == prefix  # off by default in the builder
    by_content = builder(tokenizer, window_lines=16, window_anchor="content")
    anchored = by_content.build(prefix=prefix, suffix=None, reserve=16)
    assert anchored.prefix == stable_start(prefix, 16) != prefix
    assert anchored.rendered.text.endswith(anchored.prefix)
    # per developer: the caller of the request being handled names the developer
    from coderig.serve.auth import Caller, current_caller

    by_developer = builder(tokenizer, window_lines=16)
    token = current_caller.set(Caller(key=None, session="ada", address="10.0.0.7"))
    try:
        first = by_developer.build(prefix=prefix, suffix=None, reserve=16)
        later = by_developer.build(prefix=prefix[len("value_0 = 0\n") :], suffix=None, reserve=16)
    finally:
        current_caller.reset(token)
    assert first.prefix != prefix and prefix.endswith(first.prefix)
    assert later.prefix == first.prefix  # the window slid by a line; its start did not
