"""The results file: one JSON header line, then one JSON line per scheduled request.

Written by ``coderig bench attack``, read by ``coderig bench report``/``sweep``, by the capacity
planner (``read_results``), and by pandas (``pd.read_json(path, lines=True)``, then keep rows
with ``kind == "result"``). The format is specified in docs/results-format.md; bump
:data:`FORMAT_VERSION` on any incompatible change.

Times in result lines are float seconds from the attack's start (``header["start"]`` is that
start as a Unix timestamp), rounded to the microsecond *before* anything is computed from them,
so a report made at attack time and one made later from the file give identical numbers.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

FORMAT_VERSION = 1

RESULT_FIELDS = (
    "scheduled",
    "sent",
    "first_byte",
    "first_token",
    "end",
    "status",
    "error",
    "bytes_in",
    "bytes_out",
    "prompt_tokens",
    "completion_tokens",
    "tokens_from",
    "token_times",
    "not_sent",
)


class Result:
    """One request's timings, filled in by the attack (kept minimal: it is on the hot path)."""

    __slots__ = ("id", *RESULT_FIELDS)

    def __init__(self, id: int, scheduled: float):
        self.id = id
        self.scheduled = scheduled
        self.sent: float | None = None
        self.first_byte: float | None = None
        self.first_token: float | None = None
        self.end: float | None = None
        self.status = 0
        self.error = ""
        self.bytes_in = 0
        self.bytes_out = 0
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.tokens_from: str | None = None
        self.token_times: list[float] = []
        self.not_sent = False


def _us(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def result_to_dict(r: Result) -> dict[str, Any]:
    """The JSON line for one result, with times rounded to the microsecond."""
    return {
        "kind": "result",
        "id": r.id,
        "scheduled": _us(r.scheduled),
        "sent": _us(r.sent),
        "first_byte": _us(r.first_byte),
        "first_token": _us(r.first_token),
        "end": _us(r.end),
        "status": r.status,
        "error": r.error,
        "bytes_in": r.bytes_in,
        "bytes_out": r.bytes_out,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "tokens_from": r.tokens_from,
        "token_times": [round(t, 6) for t in r.token_times],
        "not_sent": r.not_sent,
    }


def nan_to_null(x: Any) -> Any:
    """``x`` with every NaN float replaced by None: JSON has no NaN, so an undefined figure is
    written as null (in every JSON object the bench writes)."""
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: nan_to_null(v) for k, v in x.items()}
    if isinstance(x, list):
        return [nan_to_null(v) for v in x]
    return x


def _dumps(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def write_results(out: IO[str], header: dict, results: Iterable[dict]) -> None:
    """Write one attack (header line, then result lines) to a text stream."""
    out.write(_dumps(header) + "\n")
    out.write("".join(_dumps(r) + "\n" for r in results))
    out.flush()


def open_lines(source: str | Path | IO[str] | IO[bytes]) -> Iterator[str]:
    if isinstance(source, str | Path):
        if str(source) == "-":
            yield from sys.stdin
            return
        with open(source, encoding="utf-8") as f:
            yield from f
        return
    if isinstance(source, io.TextIOBase) or hasattr(source, "encoding"):
        yield from source  # type: ignore[misc]
        return
    for raw in source:  # binary stream
        yield raw.decode("utf-8") if isinstance(raw, bytes) else raw


def read_attacks(source: str | Path | IO[str] | IO[bytes]) -> list[tuple[dict, list[dict]]]:
    """Every attack in a file or stream, as (header, results) pairs in file order.

    Several attacks may be concatenated (``cat a.jsonl b.jsonl``); each header starts a new one.
    """
    return parse_lines(open_lines(source))


def parse_lines(lines: Iterable[str]) -> list[tuple[dict, list[dict]]]:
    """:func:`read_attacks` over lines already read (e.g. by a live reader)."""
    attacks: list[tuple[dict, list[dict]]] = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"line {n}: not JSON ({exc})") from None
        if obj.get("kind") == "header":
            if obj.get("version", 0) > FORMAT_VERSION:
                raise ValueError(
                    f"line {n}: results format version {obj.get('version')} is newer than "
                    f"this coderig understands ({FORMAT_VERSION})"
                )
            attacks.append((obj, []))
        elif obj.get("kind") == "result":
            if not attacks:
                raise ValueError(f"line {n}: result before any header line")
            attacks[-1][1].append(obj)
        else:
            raise ValueError(f"line {n}: neither a header nor a result line")
    return attacks


def merge_attacks(attacks: list[tuple[dict, list[dict]]]) -> tuple[dict, list[dict]]:
    """One (header, results) for several attacks, on the first attack's clock.

    Later attacks' times are shifted by the difference of their wall-clock starts, so a report
    over several files covers the span from the first send to the last response, as
    ``vegeta report a.bin b.bin`` does. The merged header lists every header in ``attacks``.
    """
    if not attacks:
        raise ValueError("no attack found (empty results file?)")
    if len(attacks) == 1:
        return attacks[0]
    base = attacks[0][0]["start"]
    merged: list[dict] = []
    for header, results in attacks:
        shift = header["start"] - base
        if shift == 0:
            merged.extend(results)
            continue
        for r in results:
            r = dict(r)
            for key in ("scheduled", "sent", "first_byte", "first_token", "end", "cancel_at"):
                if r.get(key) is not None:
                    r[key] = round(r[key] + shift, 6)
            r["token_times"] = [round(t + shift, 6) for t in r.get("token_times") or []]
            merged.append(r)
    header = dict(attacks[0][0])
    header["attacks"] = [h for h, _ in attacks]
    header["requests"] = sum(h.get("requests", 0) for h, _ in attacks)
    return header, merged


def read_results(*sources: str | Path | IO[str] | IO[bytes]) -> tuple[dict, list[dict]]:
    """(header, results) from one or more files/streams; several attacks are merged.

    This is the stable entry point for other tools (the capacity planner reads ``tags``,
    ``rate``, ``prompt_tokens``… from the header and timings from the results).
    """
    attacks: list[tuple[dict, list[dict]]] = []
    for source in sources or ("-",):
        attacks.extend(read_attacks(source))
    return merge_attacks(attacks)
