"""What a typing run means for a team: how many suggestions arrived before the next keystroke.

Python API::

    from coderig.bench.typing_report import summarize_typing, render_typing_text
    summary = summarize_typing(header, results)     # a TypingSummary
    print(summary.headline())   # of 412 suggestions requested, 73.1% arrived before ...
    print(render_typing_text(summary), end="")
    summary.to_dict()           # the --json / report --type json object

A results file is a typing run when its header says ``"workload": "typing"``. Percentiles are
exact (numpy's linear interpolation, as in the attack's report).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from coderig.bench.results import nan_to_null
from coderig.bench.tabwriter import tabwrite
from coderig.units import vegeta_duration

NAN = float("nan")


def is_typing(header: dict) -> bool:
    """Whether a results header is a typing run's (``coderig bench typing``)."""
    return header.get("workload") == "typing"


@dataclass(frozen=True)
class Percentiles:
    """p50/p90/p99 of a set of durations in seconds (NaN when the set is empty)."""

    n: int
    p50: float
    p90: float
    p99: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Percentiles:
        if not len(values):
            return cls(0, NAN, NAN, NAN)
        p50, p90, p99 = np.percentile(np.asarray(values, dtype=float), (50, 90, 99)).tolist()
        return cls(len(values), p50, p90, p99)

    def text(self) -> str:
        return ", ".join(vegeta_duration(v) for v in (self.p50, self.p90, self.p99))


@dataclass(frozen=True)
class TypingSummary:
    """Every figure of a typing run.

    ``requests`` counts sent requests; each is ``shown``, ``cancelled`` or an error
    (``errors``). ``accepted`` counts shown suggestions whose first line is exactly the line the
    developer typed next, out of ``comparable`` (shown requests with a line left to type).
    ``wasted_tokens`` are the tokens the client received for requests then cancelled: a lower
    bound of the server's wasted work (it may have generated more before it saw the client go).
    ``time_to_keystroke`` is the time each request had, from its send to the next keystroke.
    """

    developers: int
    duration: float
    debounce: float
    api: str
    url: str
    keystrokes: int
    requests: int
    shown: int
    cancelled: int
    errors: int
    accepted: int
    comparable: int
    shown_latency: Percentiles
    shown_ttft: Percentiles
    time_to_keystroke: Percentiles
    completion_tokens: int
    wasted_tokens: int
    prompt_tokens: int
    cached_tokens: int
    cached_reported: int
    error_set: list[str] = field(default_factory=list)

    @property
    def shown_ratio(self) -> float:
        return self.shown / self.requests if self.requests else NAN

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.comparable if self.comparable else NAN

    @property
    def requests_per_developer_minute(self) -> float:
        if not self.developers or not self.duration:
            return NAN
        return self.requests / self.developers / (self.duration / 60)

    @property
    def cached_ratio(self) -> float:
        """Cached prompt tokens over the prompt tokens of the requests that reported both."""
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else NAN

    def headline(self) -> str:
        """The one line a team lead reads."""
        if not self.requests:
            return "no suggestion was requested"
        return (
            f"of {self.requests} suggestions requested, {_pct(self.shown_ratio)} arrived "
            "before the next keystroke"
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (NaN as null): every field, the ratios, and the headline."""
        out = asdict(self)
        out.update(
            shown_ratio=self.shown_ratio,
            acceptance_rate=self.acceptance_rate,
            requests_per_developer_minute=self.requests_per_developer_minute,
            cached_ratio=self.cached_ratio,
            headline=self.headline(),
        )
        return nan_to_null(out)


def summarize_typing(header: dict, results: Sequence[dict]) -> TypingSummary:
    """The :class:`TypingSummary` of a typing run's header and result lines."""
    sent = [r for r in results if r.get("sent") is not None]
    by = {o: [r for r in sent if r.get("outcome") == o] for o in ("shown", "cancelled")}
    shown, cancelled = by["shown"], by["cancelled"]
    comparable = [r for r in shown if r.get("accepted") is not None]
    both = [r for r in sent if r.get("prompt_tokens") and r.get("cached_tokens") is not None]
    errors: list[str] = []
    for r in sent:
        if r.get("outcome") == "error" and r["error"] not in errors:
            errors.append(r["error"])
    return TypingSummary(
        developers=int(header.get("developers") or 0),
        duration=float(header.get("duration") or 0.0),
        debounce=float(header.get("debounce") or 0.0),
        api=str(header.get("api", "")),
        url=str(header.get("url", "")),
        keystrokes=int(header.get("keystrokes") or 0),
        requests=len(sent),
        shown=len(shown),
        cancelled=len(cancelled),
        errors=len(sent) - len(shown) - len(cancelled),
        accepted=sum(1 for r in comparable if r["accepted"]),
        comparable=len(comparable),
        shown_latency=Percentiles.of([r["end"] - r["sent"] for r in shown]),
        shown_ttft=Percentiles.of(
            [r["first_token"] - r["sent"] for r in shown if r.get("first_token") is not None]
        ),
        time_to_keystroke=Percentiles.of(
            [r["cancel_at"] - r["sent"] for r in sent if r.get("cancel_at") is not None]
        ),
        completion_tokens=sum(r.get("completion_tokens") or 0 for r in sent),
        wasted_tokens=sum(r.get("completion_tokens") or 0 for r in cancelled),
        prompt_tokens=sum(r["prompt_tokens"] for r in both),
        cached_tokens=sum(r["cached_tokens"] for r in both),
        cached_reported=sum(1 for r in sent if r.get("cached_tokens") is not None),
        error_set=errors,
    )


def render_typing_text(s: TypingSummary) -> str:
    """The text report: aligned like vegeta's, then the headline."""
    cached = f"{s.cached_tokens}, {_pct(s.cached_ratio)}" if s.cached_reported else "not reported"
    text = (
        f"Team\t[developers, duration, debounce, api]\t{s.developers}, "
        f"{vegeta_duration(s.duration)}, {vegeta_duration(s.debounce)}, {s.api}\n"
        f"Keystrokes\t[total]\t{s.keystrokes}\n"
        f"Requests\t[total, per developer-minute]\t{s.requests}, "
        f"{_f1(s.requests_per_developer_minute)}\n"
        f"Outcomes\t[shown, cancelled, errors]\t{s.shown}, {s.cancelled}, {s.errors}\n"
        f"Shown\t[ratio]\t{_pct(s.shown_ratio)}\n"
        f"Shown latency\t[50, 90, 99]\t{s.shown_latency.text()}\n"
        f"Shown TTFT\t[50, 90, 99]\t{s.shown_ttft.text()}\n"
        f"Time to next key\t[50, 90, 99]\t{s.time_to_keystroke.text()}\n"
        f"Accepted\t[count, ratio]\t{s.accepted}, {_pct(s.acceptance_rate)} of "
        f"{s.comparable}\n"
        f"Tokens out\t[total, wasted on cancelled]\t{s.completion_tokens}, {s.wasted_tokens}\n"
        f"Cached prompt\t[tokens, ratio]\t{cached}\n"
        "Error Set:\n" + "".join(f"{e}\n" for e in s.error_set)
    )
    return tabwrite(text) + "\n" + s.headline() + "\n"


def _pct(x: float) -> str:
    return "NaN" if x != x else f"{x * 100:.1f}%"


def _f1(x: float) -> str:
    return "NaN" if x != x else f"{x:.1f}"
