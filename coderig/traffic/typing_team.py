"""A team of developers typing code in editors, as a deterministic, seeded script.

This is the load a code-completion server actually gets, which no generic load tool sends:
an editor asks for a completion once the developer stops typing for the debounce time (300 ms),
and the next keystroke cancels the request if its answer has not arrived. ``coderig bench
typing`` replays this script against a server; ``coderig plan`` can simulate the same script.
The module does no network I/O and knows nothing of asyncio: the script is a pure function of
the corpus, the parameters, the number of developers, the duration and the seed.

The model, with its sources in ``typing_team.toml`` (every number cited there):

* **What is typed.** Each developer types real code: a block of consecutive lines of a source
  file, from the first non-blank character of its first line to the end of its last line. While
  they type, the editor's buffer is the file without the rest of that block: the code before the
  cursor is the file up to the cursor, the code after it is the file from the block's end on.
  Enter is one keystroke that also inserts the next line's indentation (editors auto-indent).
* **When.** Each developer has their own typing speed: a mean inter-key interval drawn from the
  distribution of 168,000 typists (Dhakal et al., CHI 2018: mean 238.66 ms, SD 111.60 ms),
  clipped to the Keystroke-Level Model's best and worst typists (0.08-1.20 s). Keystroke gaps are
  log-normal around it. Before the first keystroke of each line the developer thinks (the
  Keystroke-Level Model's M, 1.35 s), and before some lines pauses longer (2-15 s: the "micro
  pauses" of Shrestha et al., ICSE-SEET 2022).
* **Where.** After a block (its length geometric, mean 6 lines) the developer moves to another
  place in the file (mouse: KLM H + P + B B = 1.7 s) or opens another file (4.15 s). Moving the
  cursor dismisses a pending suggestion, as a keystroke does.
* **Requests.** After every keystroke followed by a gap longer than the debounce, the editor
  sends a fill-in-the-middle request at ``keystroke + debounce``, cancelled at the next input
  event (keystroke or cursor move). Each request carries the prefix and suffix bounded in lines
  as llama.vim bounds them (256 lines before the cursor's line, 64 after) or as configured.

Each developer draws from their own generator, seeded by ``(seed, developer)``, so developer 3
types the same way in a team of 4 as in a team of 8.
"""

from __future__ import annotations

import math
import re
import tomllib
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "SourceFile",
    "TypingParams",
    "InputEvent",
    "CompletionRequest",
    "DeveloperScript",
    "TeamScript",
    "typing_team",
    "first_line",
]

PARAMS_FILE = "typing_team.toml"

# A keystroke: one character, or Enter together with the indentation the editor inserts.
_KEYSTROKE = re.compile(r"\n[ \t]*|[^\n]")
_MAX_FILE_TRIES = 64


@dataclass(frozen=True)
class SourceFile:
    """One file of the corpus: ``path`` as the editor would name it, ``text`` its content."""

    path: str
    text: str = field(repr=False)

    @cached_property
    def line_starts(self) -> list[int]:
        """Offset of the first character of every line (a final newline opens an empty line)."""
        return [0, *(m.end() for m in re.finditer("\n", self.text))]

    @cached_property
    def code_lines(self) -> list[int]:
        """Lines with something other than whitespace: where a block of typing can start."""
        starts = self.line_starts
        return [i for i in range(len(starts)) if self.text[starts[i] : self.line_end(i)].strip()]

    def line_of(self, offset: int) -> int:
        """0-based line number of the character at ``offset``."""
        return bisect_right(self.line_starts, offset) - 1

    def line_end(self, line: int) -> int:
        """Offset of the newline that ends ``line`` (the text's length for the last line)."""
        starts = self.line_starts
        return starts[line + 1] - 1 if line + 1 < len(starts) else len(self.text)


@dataclass(frozen=True)
class TypingParams:
    """The typing model's parameters; defaults come from ``typing_team.toml`` (cited there)."""

    debounce: float
    prefix_lines: int
    suffix_lines: int
    typist_mean_iki: float
    typist_sd_iki: float
    fastest_iki: float
    slowest_iki: float
    iki_cv: float
    line_think: float
    line_think_cv: float
    micro_pause_min: float
    micro_pause_max: float
    micro_pause_share: float
    block_lines_mean: float
    other_file_share: float
    move: float
    file_switch: float
    move_cv: float

    @classmethod
    def defaults(cls) -> TypingParams:
        """The parameters of ``typing_team.toml`` beside this module."""
        return _default_params()

    @classmethod
    def from_toml(cls, text: str, base: TypingParams | None = None) -> TypingParams:
        """Parameters from TOML text, in tables (``[editor]``, ``[keystrokes]``...) or not;
        those it leaves out come from ``base`` (without one, every parameter is required)."""
        flat: dict[str, Any] = {}
        for key, value in tomllib.loads(text).items():
            if isinstance(value, dict):
                flat.update(value)
            else:
                flat[key] = value
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(flat) - names)
        if unknown:
            raise ValueError(f"unknown typing parameters: {', '.join(unknown)}")
        if base is not None:
            return replace(base, **flat)
        missing = sorted(names - set(flat))
        if missing:
            raise ValueError(f"missing typing parameters: {', '.join(missing)}")
        return cls(**flat)

    @classmethod
    def load(cls, path: str | Path | None = None) -> TypingParams:
        """The defaults, changed by a TOML file shaped like ``typing_team.toml``: it may hold
        any subset of the parameters (say, a ``[keystrokes]`` table with only ``iki_cv``)."""
        defaults = cls.defaults()
        if path is None:
            return defaults
        return cls.from_toml(Path(path).read_text(encoding="utf-8"), base=defaults)

    def with_(self, **changes: Any) -> TypingParams:
        """A copy with some parameters changed (``params.with_(debounce=0.35)``)."""
        return replace(self, **changes)

    def __post_init__(self) -> None:
        if not self.debounce > 0:
            raise ValueError(f"debounce must be positive, got {self.debounce}")
        if self.prefix_lines < 0 or self.suffix_lines < 0:
            raise ValueError("prefix_lines and suffix_lines must be >= 0")
        if not 0 < self.fastest_iki <= self.slowest_iki:
            raise ValueError("need 0 < fastest_iki <= slowest_iki")
        if not 0 <= self.micro_pause_share <= 1 or not 0 <= self.other_file_share <= 1:
            raise ValueError("shares must be between 0 and 1")
        if self.block_lines_mean < 1:
            raise ValueError("block_lines_mean must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@lru_cache(maxsize=1)
def _default_params() -> TypingParams:
    text = resources.files(__package__).joinpath(PARAMS_FILE).read_text(encoding="utf-8")
    return TypingParams.from_toml(text)


@dataclass(frozen=True, slots=True)
class InputEvent:
    """A keystroke (``key``) or a cursor move to another place or file (``move``)."""

    time: float
    kind: Literal["key", "move"]
    file: int
    cursor: int


@dataclass(frozen=True)
class CompletionRequest:
    """One fill-in-the-middle request of the script.

    ``send`` is the last keystroke plus the debounce; ``cancel`` is the developer's next input
    event (the editor drops the request then if its answer has not arrived), ``None`` only when
    the script has no further event. The developer has typed the file up to ``cursor`` and has
    yet to type ``source.text[cursor:block_end]``; the buffer continues with the file from
    ``block_end``. ``prefix`` and ``suffix`` are bounded in lines as the editor bounds them.
    """

    developer: int
    index: int
    send: float
    cancel: float | None
    source: SourceFile = field(repr=False)
    cursor: int
    block_end: int
    prefix_lines: int
    suffix_lines: int

    @property
    def path(self) -> str:
        return self.source.path

    @property
    def line(self) -> int:
        """0-based line of the cursor."""
        return self.source.line_of(self.cursor)

    @property
    def column(self) -> int:
        return self.cursor - self.source.line_starts[self.line]

    @property
    def prefix_start(self) -> int:
        """Where the prefix begins: the start of the line ``prefix_lines`` above the cursor's."""
        return self.source.line_starts[max(0, self.line - self.prefix_lines)]

    @property
    def suffix_end(self) -> int:
        """Where the suffix ends: after the ``suffix_lines`` lines below the cursor's line."""
        starts = self.source.line_starts
        after = self.source.line_of(self.block_end) + 1 + self.suffix_lines
        return starts[after] if after < len(starts) else len(self.source.text)

    @property
    def prefix(self) -> str:
        """The code before the cursor, from ``prefix_start``: always a tail of the file's text up
        to the cursor, starting at a line."""
        return self.source.text[self.prefix_start : self.cursor]

    @property
    def line_prefix(self) -> str:
        """The cursor's line up to the cursor (llama.cpp's ``/infill`` sends it as ``prompt``)."""
        return self.source.text[self.source.line_starts[self.line] : self.cursor]

    @property
    def suffix(self) -> str:
        """The code after the cursor: the rest of the buffer, which resumes at ``block_end``."""
        return self.source.text[self.block_end : self.suffix_end]

    @property
    def typed_next(self) -> str:
        """What the developer types after this request, up to the end of the current block."""
        return self.source.text[self.cursor : self.block_end]

    @property
    def expected(self) -> str:
        """The line an exact-match suggestion must produce: see :func:`first_line`."""
        return first_line(self.typed_next)

    def shared_prefix(self, previous: CompletionRequest) -> int:
        """Characters at the start of this prefix that ``previous``'s prefix also starts with:
        what a server that kept the previous prompt need not process again."""
        a, b = previous.prefix, self.prefix
        n = min(len(a), len(b))
        i = 0
        while i < n and a[i] == b[i]:
            i += 1
        return i


def first_line(text: str) -> str:
    """``text`` up to the end of its first line that is not blank, trailing whitespace removed.

    Line breaks and indentation before that line are kept: a suggestion made at the end of a
    line must start the new line, with its indentation, where the developer started it. A
    suggestion is *accepted* when ``first_line(suggestion) == first_line(typed_next)`` and that
    line is not empty (an exact match: the developer would have typed exactly that line next).
    """
    start = 0
    while True:
        end = text.find("\n", start)
        if end < 0:
            return text.rstrip()
        if text[start:end].strip():
            return text[:end].rstrip()
        start = end + 1


@dataclass(frozen=True)
class DeveloperScript:
    """One developer's input events and the requests their editor sends, in time order."""

    developer: int
    typist_iki: float
    events: tuple[InputEvent, ...]
    requests: tuple[CompletionRequest, ...]

    @property
    def keystrokes(self) -> int:
        return sum(1 for e in self.events if e.kind == "key")


@dataclass(frozen=True)
class TeamScript:
    """Everything a typing benchmark sends, fixed before it starts."""

    params: TypingParams
    duration: float
    seed: int
    developers: tuple[DeveloperScript, ...]

    @cached_property
    def requests(self) -> tuple[CompletionRequest, ...]:
        """Every developer's requests, by send time (ties: by developer)."""
        every = [r for d in self.developers for r in d.requests]
        return tuple(sorted(every, key=lambda r: (r.send, r.developer)))

    @property
    def keystrokes(self) -> int:
        return sum(d.keystrokes for d in self.developers)

    def request_rate(self) -> float:
        """Requests per second per developer over the script's duration."""
        return len(self.requests) / (self.duration * max(1, len(self.developers)))


def typing_team(
    corpus: Sequence[SourceFile],
    developers: int,
    duration: float,
    params: TypingParams | None = None,
    seed: int = 0,
) -> TeamScript:
    """The script of ``developers`` typing for ``duration`` seconds in files of ``corpus``.

    ``corpus`` is any sequence of :class:`SourceFile` (it may read files lazily: only the files
    the developers open are read). Requests are those sent before ``duration``; each developer's
    events run one event past it, so every request has its cancel time.
    """
    if developers < 1:
        raise ValueError(f"developers must be >= 1, got {developers}")
    if not duration > 0:
        raise ValueError(f"duration must be positive, got {duration}")
    if len(corpus) == 0:
        raise ValueError("the corpus holds no source files")
    params = params or TypingParams.defaults()
    scripts = tuple(
        _Developer(corpus, params, dev, np.random.default_rng([seed, dev])).script(duration)
        for dev in range(developers)
    )
    return TeamScript(params, duration, seed, scripts)


def _lognormal(rng: np.random.Generator, mean: float, cv: float, size: int | None = None) -> Any:
    """Log-normal draws with the given mean and coefficient of variation."""
    sigma = math.sqrt(math.log1p(cv * cv))
    return rng.lognormal(math.log(mean) - sigma * sigma / 2, sigma, size)


@dataclass
class _Block:
    file: int
    source: SourceFile
    start: int
    end: int


class _Developer:
    """Draws one developer's events; all randomness comes from ``rng``, in a fixed order."""

    def __init__(
        self,
        corpus: Sequence[SourceFile],
        params: TypingParams,
        developer: int,
        rng: np.random.Generator,
    ) -> None:
        self.corpus = corpus
        self.params = params
        self.developer = developer
        self.rng = rng
        sd = params.typist_sd_iki / params.typist_mean_iki
        iki = float(_lognormal(rng, params.typist_mean_iki, sd))
        self.typist_iki = min(max(iki, params.fastest_iki), params.slowest_iki)

    def script(self, duration: float) -> DeveloperScript:
        p = self.params
        rng = self.rng
        events: list[InputEvent] = []
        blocks: list[_Block] = []  # the block each event belongs to
        file = int(rng.integers(len(self.corpus)))
        t = float(rng.uniform(0.0, p.move))  # developers do not all start at once
        while True:
            block = self._block(file)
            events.append(InputEvent(t, "move", block.file, block.start))
            blocks.append(block)
            if t > duration:
                break
            t = self._type(block, t, events, blocks)
            if t > duration:
                break
            other = len(self.corpus) > 1 and rng.random() < p.other_file_share
            t += float(_lognormal(rng, p.file_switch if other else p.move, p.move_cv))
            file = self._other_file(block.file) if other else block.file
        return DeveloperScript(
            self.developer, self.typist_iki, tuple(events), self._requests(events, blocks, duration)
        )

    def _type(
        self, block: _Block, t: float, events: list[InputEvent], blocks: list[_Block]
    ) -> float:
        """Append the block's keystrokes from time ``t``; returns the time of the last one."""
        p, rng = self.params, self.rng
        units = list(_KEYSTROKE.finditer(block.source.text, block.start, block.end))
        ends = [m.end() for m in units]
        gaps = _lognormal(rng, self.typist_iki, p.iki_cv, len(units))
        # The first keystroke of each line (after Enter) comes after the line's think time.
        line_first = [0] + [i + 1 for i, m in enumerate(units[:-1]) if m.group()[0] == "\n"]
        think = _lognormal(rng, p.line_think, p.line_think_cv, len(line_first))
        micro = rng.random(len(line_first)) < p.micro_pause_share
        pauses = np.exp(
            rng.uniform(math.log(p.micro_pause_min), math.log(p.micro_pause_max), len(line_first))
        )
        gaps[line_first] += think + np.where(micro, pauses, 0.0)
        times = t + np.cumsum(gaps)
        for when, cursor in zip(times.tolist(), ends, strict=True):
            events.append(InputEvent(when, "key", block.file, cursor))
            blocks.append(block)
        return float(times[-1])

    def _requests(
        self, events: list[InputEvent], blocks: list[_Block], duration: float
    ) -> tuple[CompletionRequest, ...]:
        p = self.params
        out: list[CompletionRequest] = []
        for i, event in enumerate(events):
            if event.kind != "key":
                continue
            send = event.time + p.debounce
            if send >= duration:
                break
            following = events[i + 1].time if i + 1 < len(events) else None
            if following is not None and following - event.time <= p.debounce:
                continue  # typed on before the editor's timer fired: no request
            block = blocks[i]
            out.append(
                CompletionRequest(
                    developer=self.developer,
                    index=len(out),
                    send=send,
                    cancel=following,
                    source=block.source,
                    cursor=event.cursor,
                    block_end=block.end,
                    prefix_lines=p.prefix_lines,
                    suffix_lines=p.suffix_lines,
                )
            )
        return tuple(out)

    def _block(self, file: int) -> _Block:
        """Lines to type next in ``file`` (another file if it has no code)."""
        rng = self.rng
        for _ in range(_MAX_FILE_TRIES):
            source = self.corpus[file]
            lines = source.code_lines
            if lines:
                first = lines[int(rng.integers(len(lines)))]
                count = int(rng.geometric(1.0 / self.params.block_lines_mean))
                last = min(first + count, len(source.line_starts)) - 1
                line = source.text[source.line_starts[first] : source.line_end(first)]
                indent = len(line) - len(line.lstrip(" \t"))
                start = source.line_starts[first] + indent
                return _Block(file, source, start, source.line_end(last))
            file = self._other_file(file)
        raise ValueError("the corpus has no code to type (every file tried was blank)")

    def _other_file(self, current: int) -> int:
        n = len(self.corpus)
        if n == 1:
            return current
        pick = int(self.rng.integers(n - 1))
        return pick + 1 if pick >= current else pick
