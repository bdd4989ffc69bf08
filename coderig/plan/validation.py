"""How wrong is the planner on runs it never saw? The out-of-sample error table.

Every ``[[runs]]`` entry of ``calibration.toml`` with ``use_for_fit = false`` is a published
measurement from a source independent of the fit (other GPUs, model sizes, dtypes, tensor
parallelism, engine versions). :func:`out_of_sample` predicts each with the shipped factors
and :func:`summary` reduces the p50 errors to the two numbers the issue tracks, the median and
the maximum of ``|error|``. ``coderig plan validate --markdown`` prints the table that
BENCHMARKS.md quotes, so the figures there can be regenerated, not retyped.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from coderig.plan.calibrate import LooRow, Run, validate
from coderig.plan.catalog import Catalog
from coderig.plan.roofline import Factors

__all__ = ["ValidationRow", "ValidationSummary", "markdown_table", "out_of_sample", "summary"]


@dataclass(frozen=True)
class ValidationRow:
    """One published measurement of a validation run and the planner's prediction of it."""

    run: Run
    row: LooRow

    @property
    def error_pct(self) -> float:
        return self.row.error_pct

    def to_dict(self) -> dict:
        r = self.run
        return {
            **self.row.to_dict(),
            "gpu": r.gpu,
            "model": r.model,
            "dtype": r.dtype,
            "tensor_parallel": r.tensor_parallel,
            "rate": r.rate,
            "prompt_tokens": r.prompt_tokens,
            "output_tokens": r.output_tokens,
            "source": r.source,
            "url": r.url,
            "date": r.date,
        }


@dataclass(frozen=True)
class ValidationSummary:
    """Median and maximum |error| of the p50 latencies, over how many runs."""

    runs: int
    median_abs_pct: float
    max_abs_pct: float
    worst: str

    def describe(self) -> str:
        return (
            f"out-of-sample p50 error over {self.runs} published runs: median "
            f"{self.median_abs_pct:.1f}%, max {self.max_abs_pct:.1f}% ({self.worst})"
        )


def out_of_sample(catalog: Catalog, factors: Factors, runs: Iterable[Run]) -> list[ValidationRow]:
    """Every measurement of every ``use_for_fit = false`` run, predicted with ``factors``."""
    by_id = {run.id: run for run in runs if not run.use_for_fit}
    return [
        ValidationRow(by_id[row.run], row) for row in validate(catalog, factors, by_id.values())
    ]


def summary(rows: Iterable[ValidationRow], metric: str = "latency_p50") -> ValidationSummary:
    """The issue's yardstick: |error| of each run's ``metric``, median and maximum."""
    chosen = [r for r in rows if r.row.metric == metric]
    if not chosen:
        return ValidationSummary(0, float("nan"), float("nan"), "-")
    worst = max(chosen, key=lambda r: abs(r.error_pct))
    return ValidationSummary(
        runs=len(chosen),
        median_abs_pct=statistics.median(abs(r.error_pct) for r in chosen),
        max_abs_pct=abs(worst.error_pct),
        worst=worst.run.id,
    )


def _source_name(run: Run) -> str:
    return run.source.split(":", 1)[0]


def markdown_table(rows: list[ValidationRow]) -> str:
    """The table BENCHMARKS.md quotes: one line per measurement, grouped by source."""
    lines = [
        "| run | GPU | model | dtype | TP | in / out tokens | metric | published s "
        "| predicted s | error |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sorted(rows, key=lambda r: (_source_name(r.run), r.run.gpu, r.run.id)):
        run = r.run
        lines.append(
            f"| {run.id} | {run.gpu} | {run.model} | {run.dtype} | {run.tensor_parallel} | "
            f"{run.prompt_tokens} / {run.output_tokens} | {r.row.metric} | "
            f"{r.row.measured:.3f} | {r.row.predicted:.3f} | {r.error_pct:+.1f} % |"
        )
    lines.append("")
    for url in sorted({r.run.url for r in rows}):
        group = [r for r in rows if r.run.url == url]
        part = summary(group)
        lines.append(
            f"- {_source_name(group[0].run)} ({group[0].run.date}, <{url}>): "
            f"{part.runs} runs, median {part.median_abs_pct:.1f} %, max {part.max_abs_pct:.1f} %"
        )
    lines.append("")
    lines.append(summary(rows).describe())
    return "\n".join(lines)
