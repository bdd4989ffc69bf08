"""The typing team as a script: seeded, built from real code, a request after each pause."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from coderig.bench.corpus import Corpus
from coderig.traffic.typing_team import (
    SourceFile,
    TypingParams,
    first_line,
    typing_team,
)

DEFAULTS = TypingParams.defaults()


@pytest.fixture(scope="module")
def stdlib() -> Corpus:
    return Corpus()


def fingerprint(script) -> list[tuple]:
    return [(r.developer, r.send, r.cancel, r.path, r.cursor, r.block_end) for r in script.requests]


def test_the_same_seed_gives_the_same_keystrokes_and_requests(stdlib):
    a = typing_team(stdlib, 3, 30.0, seed=7)
    b = typing_team(stdlib, 3, 30.0, seed=7)
    assert [d.events for d in a.developers] == [d.events for d in b.developers]
    assert fingerprint(a) == fingerprint(b) and len(a.requests) > 20
    assert [r.prefix for r in a.requests] == [r.prefix for r in b.requests]
    assert fingerprint(typing_team(stdlib, 3, 30.0, seed=8)) != fingerprint(a)


def test_a_developer_types_the_same_whatever_the_size_of_the_team(stdlib):
    small = typing_team(stdlib, 2, 20.0, seed=3)
    large = typing_team(stdlib, 5, 20.0, seed=3)
    assert small.developers[1].events == large.developers[1].events
    assert small.developers[1].requests == large.developers[1].requests


def test_every_prompt_is_the_file_up_to_the_cursor_and_the_code_after_the_block(stdlib):
    script = typing_team(stdlib, 4, 40.0, seed=1)
    assert script.requests
    for r in script.requests:
        text = r.source.text
        assert text[: r.cursor].endswith(r.prefix) and r.prefix
        assert r.prefix_start == 0 or text[r.prefix_start - 1] == "\n"
        assert r.prefix.count("\n") <= DEFAULTS.prefix_lines
        assert r.prefix.endswith(r.line_prefix) and "\n" not in r.line_prefix
        # The buffer goes on after the block the developer is typing.
        assert text[r.block_end :].startswith(r.suffix)
        assert r.suffix == "" or r.suffix.startswith("\n")
        assert r.suffix.count("\n") <= DEFAULTS.suffix_lines + 1
        assert r.typed_next == text[r.cursor : r.block_end]
        assert r.cancel is not None and r.send < r.cancel


def test_prompts_are_bounded_in_lines_as_configured(stdlib):
    tabby = DEFAULTS.with_(prefix_lines=20, suffix_lines=20)
    for r in typing_team(stdlib, 3, 30.0, tabby, seed=2).requests:
        assert r.prefix.count("\n") <= 20 and r.suffix.count("\n") <= 21


def test_the_next_request_of_a_developer_extends_its_prompt(stdlib):
    whole_file = DEFAULTS.with_(prefix_lines=10**6)
    script = typing_team(stdlib, 4, 60.0, whole_file, seed=4)
    pairs = 0
    for dev in script.developers:
        for prev, nxt in zip(dev.requests, dev.requests[1:], strict=False):
            if prev.source is nxt.source and prev.block_end == nxt.block_end:
                # Same block: the new prompt is the old one plus what was typed since.
                assert nxt.prefix.startswith(prev.prefix)
                assert nxt.shared_prefix(prev) == len(prev.prefix)
                assert nxt.cursor > prev.cursor
                pairs += 1
    assert pairs > 10
    # With llama.vim's 256-line window the prompt still shares its start on the same line.
    for dev in typing_team(stdlib, 4, 60.0, seed=4).developers:
        for prev, nxt in zip(dev.requests, dev.requests[1:], strict=False):
            if prev.source is nxt.source and prev.line == nxt.line:
                assert nxt.prefix.startswith(prev.prefix)


def test_a_request_follows_every_pause_longer_than_the_debounce_and_no_other(stdlib):
    script = typing_team(stdlib, 4, 60.0, seed=5)
    debounce = DEFAULTS.debounce
    for dev in script.developers:
        events = dev.events
        expected = [
            (e.time + debounce, nxt.time, e.cursor)
            for e, nxt in zip(events, events[1:], strict=False)
            if e.kind == "key" and nxt.time - e.time > debounce and e.time + debounce < 60.0
        ]
        assert [(r.send, r.cancel, r.cursor) for r in dev.requests] == expected
    # A longer debounce waits out more pauses: fewer requests, each with more time.
    slower = typing_team(stdlib, 4, 60.0, DEFAULTS.with_(debounce=0.6), seed=5)
    assert len(slower.requests) < len(script.requests)


def test_the_request_rate_within_lines_is_the_share_of_gaps_longer_than_the_debounce():
    # One typist of known speed: gaps inside lines are log-normal around 240 ms, CV 0.5.
    steady = DEFAULTS.with_(typist_sd_iki=1e-9, micro_pause_share=0.0)
    source = SourceFile(
        "long.py", "".join(f"value_{i} = compute(value_{i - 1}, x)\n" for i in range(300))
    )
    dev = typing_team([source], 1, 900.0, steady, seed=6).developers[0]
    assert dev.typist_iki == pytest.approx(DEFAULTS.typist_mean_iki, rel=1e-6)

    def mid_line(event) -> bool:
        start = source.line_starts[source.line_of(event.cursor)]
        return bool(source.text[start : event.cursor].strip())

    gaps = [
        nxt.time - e.time
        for e, nxt in zip(dev.events, dev.events[1:], strict=False)
        if e.kind == nxt.kind == "key" and mid_line(e) and e.time + DEFAULTS.debounce < 900.0
    ]
    sigma = math.sqrt(math.log1p(DEFAULTS.iki_cv**2))
    law = stats.lognorm(sigma, scale=DEFAULTS.typist_mean_iki * math.exp(-(sigma**2) / 2))
    share = sum(1 for g in gaps if g > DEFAULTS.debounce) / len(gaps)
    assert len(gaps) > 2000
    assert share == pytest.approx(law.sf(DEFAULTS.debounce), abs=0.03)
    requests_mid_line = sum(1 for r in dev.requests if r.line_prefix.strip() and r.typed_next)
    assert requests_mid_line == pytest.approx(share * len(gaps), rel=0.02)


def test_no_request_while_typing_faster_than_the_debounce(stdlib):
    # Gaps inside a line all far below the debounce: requests only where the developer stops,
    # after Enter (before thinking about the next line) or at the end of a block.
    brisk = DEFAULTS.with_(typist_mean_iki=0.08, typist_sd_iki=1e-9, iki_cv=0.05)
    script = typing_team(stdlib, 4, 60.0, brisk, seed=9)
    assert script.requests
    for r in script.requests:
        assert r.line_prefix.strip() == "" or r.typed_next == ""
    assert script.keystrokes > 10 * len(script.requests)


def test_developers_move_to_other_places_and_files(stdlib):
    script = typing_team(stdlib, 2, 300.0, seed=10)
    for dev in script.developers:
        moves = [e for e in dev.events if e.kind == "move"]
        assert len(moves) > 5
        assert len({e.file for e in moves}) > 1


def test_first_line_keeps_the_line_break_and_indentation_before_the_first_real_line():
    assert first_line("foo(x)\n    bar") == "foo(x)"
    assert first_line("\n    return x  \n") == "\n    return x"
    assert first_line("  \n\n  y = 1") == "  \n\n  y = 1"
    assert first_line("") == "" and first_line("\n\n") == ""
    # A suggestion that starts the next line matches only if the developer started it too.
    assert first_line("return x") != first_line("\n    return x")


def test_parameters_come_from_the_data_file_and_refuse_unknown_names(tmp_path):
    assert DEFAULTS.debounce == 0.3 and DEFAULTS.prefix_lines == 256
    assert DEFAULTS.typist_mean_iki == pytest.approx(0.23866)
    custom = tmp_path / "team.toml"
    custom.write_text("[editor]\ndebounce = 0.35\n[keystrokes]\niki_cv = 0.4\n")
    changed = TypingParams.load(custom)
    assert (changed.debounce, changed.iki_cv) == (0.35, 0.4)
    assert changed.with_(debounce=0.3, iki_cv=0.5) == DEFAULTS
    custom.write_text("[x]\ndeboonce = 1\n")
    with pytest.raises(ValueError, match="unknown typing parameters: deboonce"):
        TypingParams.load(custom)
    with pytest.raises(ValueError, match="missing typing parameters"):
        TypingParams.from_toml("debounce = 0.3\n")


def test_a_corpus_is_the_code_under_a_directory(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.ts").write_text("export const x = 1;\n" * 20)
    (tmp_path / "src" / "tiny.py").write_text("x = 1\n")  # too small to type in
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "dep.js").write_text("module.exports = 1;\n" * 20)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("not code\n" * 50)
    corpus = Corpus(tmp_path)
    assert corpus.paths == ("src/app.ts",)
    script = typing_team(corpus, 2, 20.0, seed=0)
    assert {r.path for r in script.requests} == {"src/app.ts"}
    with pytest.raises(ValueError, match="no source files"):
        Corpus(tmp_path / "docs")


def test_a_team_needs_developers_time_and_code():
    one = [SourceFile("a.py", "x = 1\n" * 10)]
    with pytest.raises(ValueError):
        typing_team(one, 0, 10.0)
    with pytest.raises(ValueError):
        typing_team(one, 1, 0.0)
    with pytest.raises(ValueError, match="no code to type"):
        typing_team([SourceFile("blank.py", "\n\n   \n")], 1, 10.0)
