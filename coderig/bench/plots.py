"""Charts as PNG and one HTML page: for a sweep, latency percentiles vs rate and a latency CDF
per rate; for typing runs, the CDF of shown latency and shown/cancelled requests over time.

The HTML page embeds the PNGs as base64 data URIs and the numbers as a plain table, so it is
a single file that opens anywhere (no CDN, no scripts) and can be attached to a ticket.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator  # noqa: E402

from coderig.bench.metrics import sent_latencies  # noqa: E402
from coderig.bench.sweep import Sweep  # noqa: E402
from coderig.units import vegeta_duration  # noqa: E402


def _latencies(results: list[dict]) -> np.ndarray:
    return np.array(sent_latencies(results))


def percentiles_figure(sweep: Sweep) -> Any:
    steps = sweep.by_rate()
    rates = [s.rate for s in steps]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for p, style in ((50, "o-"), (90, "s-"), (99, "^-")):
        ax.plot(rates, [s.summary.latencies.percentile(p) for s in steps], style, label=f"p{p}")
    if any(s.summary.ttft.n for s in steps):
        for p, style in ((50, "o--"), (99, "^--")):
            ax.plot(
                rates,
                [s.summary.ttft.percentile(p) for s in steps],
                style,
                alpha=0.7,
                label=f"TTFT p{p}",
            )
    if sweep.slo is not None:
        ax.axhline(sweep.slo, color="red", linestyle=":", label=f"SLO p{sweep.percentile}")
    if len(rates) > 1 and max(rates) / min(rates) >= 8:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xticks(rates)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    # Latency counts failures too (as vegeta's does): a fast 429 pulls percentiles down, so
    # say where requests failed rather than let a dip read as an improvement.
    for s in steps:
        if s.summary.success == s.summary.success and s.summary.success < 0.995:
            ax.annotate(
                f"{s.summary.success:.0%} ok",
                (s.rate, s.summary.latencies.p99),
                textcoords="offset points",
                xytext=(0, 8),
                ha="center",
                fontsize="small",
                color="red",
            )
    ax.set_xlabel("requested rate (req/s)")
    ax.set_ylabel("latency (s)")
    ax.set_title("Latency percentiles vs rate")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def cdf_figure(sweep: Sweep) -> Any:
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for s in sweep.by_rate():
        lat = np.sort(_latencies(s.results))
        if lat.size:
            ax.step(
                lat, np.arange(1, lat.size + 1) / lat.size, where="post", label=f"{s.rate:g} req/s"
            )
    if sweep.slo is not None:
        ax.axvline(sweep.slo, color="red", linestyle=":", label="SLO")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: vegeta_duration(v)))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xlabel("latency (log scale)")
    ax.set_ylabel("fraction of requests ≤ latency")
    ax.set_title("Latency CDF per rate")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def table_rows(sweep: Sweep) -> list[dict[str, str]]:
    """The sweep table as strings: shared by the terminal table and the HTML page."""
    rows = []
    for s in sweep.by_rate():
        m = s.summary
        lat = m.latencies
        rows.append(
            {
                "rate": f"{s.rate:g}",
                "achieved": f"{m.rate:.2f}",
                "requests": str(m.requests),
                "p50": vegeta_duration(lat.p50),
                "p90": vegeta_duration(lat.p90),
                "p99": vegeta_duration(lat.p99),
                "ttft p50": vegeta_duration(m.ttft.p50) if m.ttft.n else "-",
                "throughput": f"{m.throughput:.2f}",
                "tok/s": f"{m.output_tokens_per_second.run:.1f}" if m.completion_tokens.n else "-",
                "success": f"{m.success * 100:.2f}%",
                "not sent": str(m.not_sent),
                "slo": "" if s.meets_slo is None else ("ok" if s.meets_slo else "miss"),
            }
        )
    return rows


def write_plots(sweep: Sweep, out_dir: str | Path, title: str = "coderig bench sweep") -> dict:
    """Write latency-vs-rate.png, latency-cdf.png and sweep.html; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = {
        "latency-vs-rate.png": _png(percentiles_figure(sweep)),
        "latency-cdf.png": _png(cdf_figure(sweep)),
    }
    for name, data in images.items():
        (out / name).write_bytes(data)
    (out / "sweep.html").write_text(render_html(sweep, images, title), encoding="utf-8")
    return {name: str(out / name) for name in (*images, "sweep.html")}


def render_html(sweep: Sweep, images: dict[str, bytes], title: str) -> str:
    first = sweep.steps[0].header if sweep.steps else {}
    params = {
        k: first.get(k)
        for k in (
            "url",
            "duration",
            "requests",
            "arrival",
            "stream",
            "prompt_tokens",
            "max_tokens",
            "fim",
            "tags",
            "start_iso",
        )
    }
    verdict = ""
    if sweep.slo is not None:
        best = "none" if sweep.best_rate is None else f"{sweep.best_rate:g} req/s"
        verdict = (
            f"<p><b>Highest rate meeting p{sweep.percentile} ≤ "
            f"{html.escape(vegeta_duration(sweep.slo))}: {best}</b></p>"
        )
    return _page(title, params, verdict, table_rows(sweep), images)


def _page(
    title: str,
    params: dict[str, Any],
    verdict: str,
    rows: list[dict[str, str]],
    images: dict[str, bytes],
) -> str:
    """A self-contained HTML page: parameters, a verdict, a table, the images inline."""
    head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0]) if rows else ""
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r.values()) + "</tr>" for r in rows
    )
    imgs = "".join(
        f'<figure><img alt="{html.escape(n)}" src="data:image/png;base64,'
        f'{base64.b64encode(d).decode()}"><figcaption>{html.escape(n)}</figcaption></figure>'
        for n, d in images.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.25em .6em;
text-align:right}}figure{{margin:1em 0}}img{{max-width:100%}}code{{font-size:90%}}</style>
</head><body><h1>{html.escape(title)}</h1>
<p><code>{html.escape(str(params))}</code></p>{verdict}
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
{imgs}</body></html>
"""


# --- typing runs ---------------------------------------------------------------------------

TypingRun = tuple[str, dict, list[dict]]
"""A typing run to plot: (label, results header, result lines)."""

OUTCOME_COLORS = {"shown": "tab:green", "cancelled": "tab:orange", "error": "tab:red"}


def typing_label(header: dict) -> str:
    """A short name for a typing run: its --name, else developers and API."""
    return header.get("name") or f"{header.get('developers')} dev, {header.get('api')}"


def shown_latency_cdf_figure(runs: list[TypingRun]) -> Any:
    """CDF of the latency of shown suggestions, one curve per run, over *all* requests: the
    curve ends at the run's shown share, so a run that shows fewer suggestions ends lower.
    The dashed grey curve is the first run's time to the next keystroke: the share of
    requests whose developer had typed on within that time (no server can beat it)."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for i, (label, _header, results) in enumerate(runs):
        sent = [r for r in results if r.get("sent") is not None]
        if not sent:
            continue
        lat = np.sort([r["end"] - r["sent"] for r in sent if r.get("outcome") == "shown"])
        if i == 0:
            budget = np.sort([r["cancel_at"] - r["sent"] for r in sent if r.get("cancel_at")])
            budget = budget[budget > 0]
            if budget.size:
                ax.step(
                    budget,
                    np.arange(1, budget.size + 1) / len(sent),
                    where="post",
                    color="grey",
                    linestyle="--",
                    label="next keystroke came within",
                )
        if lat.size:
            ax.step(
                lat,
                np.arange(1, lat.size + 1) / len(sent),
                where="post",
                label=f"{label}: {lat.size / len(sent):.0%} shown",
            )
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: vegeta_duration(v)))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_ylim(0, 1)
    ax.set_xlabel("time from request (log scale)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("Suggestions shown before the next keystroke")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def outcomes_over_time_figure(runs: list[TypingRun], buckets: int = 20) -> Any:
    """Shown, cancelled and failed requests per interval of send time, one panel per run."""
    fig, axes = plt.subplots(
        len(runs), 1, figsize=(7, 1.2 + 2.2 * len(runs)), dpi=110, squeeze=False, sharex=True
    )
    for ax, (label, header, results) in zip(axes[:, 0], runs, strict=True):
        duration = float(header.get("duration") or 0) or max(
            (r["scheduled"] for r in results), default=1.0
        )
        width = duration / buckets
        edges = np.arange(buckets + 1) * width
        bottom = np.zeros(buckets)
        for outcome, color in OUTCOME_COLORS.items():
            times = [r["scheduled"] for r in results if r.get("outcome") == outcome]
            counts, _ = np.histogram(times, bins=edges)
            ax.bar(edges[:-1], counts, width=width, align="edge", bottom=bottom, color=color,
                   label=outcome)  # fmt: skip
            bottom += counts
        ax.set_title(label, fontsize="medium")
        ax.set_ylabel(f"requests / {vegeta_duration(width)}")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3, axis="y")
    axes[0, 0].legend(fontsize="small", loc="upper right")
    axes[-1, 0].set_xlabel("send time (s from start)")
    fig.tight_layout()
    return fig


def typing_rows(runs: list[TypingRun]) -> list[dict[str, str]]:
    """One table row per run: the figures of its summary."""
    from coderig.bench.typing_report import summarize_typing

    rows = []
    for label, header, results in runs:
        s = summarize_typing(header, results)
        rows.append(
            {
                "run": label,
                "developers": str(s.developers),
                "requests": str(s.requests),
                "shown": f"{s.shown_ratio:.1%}" if s.requests else "-",
                "cancelled": str(s.cancelled),
                "errors": str(s.errors),
                "shown p50": vegeta_duration(s.shown_latency.p50),
                "shown p90": vegeta_duration(s.shown_latency.p90),
                "shown p99": vegeta_duration(s.shown_latency.p99),
                "accepted": f"{s.accepted}/{s.comparable}",
                "wasted tokens": str(s.wasted_tokens),
            }
        )
    return rows


def write_typing_plots(
    runs: list[TypingRun], out_dir: str | Path, title: str = "coderig bench typing"
) -> dict[str, str]:
    """Write typing-shown-cdf.png, typing-outcomes.png and typing.html; returns their paths."""
    if not runs:
        raise ValueError("no typing run to plot")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = {
        "typing-shown-cdf.png": _png(shown_latency_cdf_figure(runs)),
        "typing-outcomes.png": _png(outcomes_over_time_figure(runs)),
    }
    for name, data in images.items():
        (out / name).write_bytes(data)
    from coderig.bench.typing_report import summarize_typing

    header = runs[0][1]
    params = {
        k: header.get(k)
        for k in ("url", "api", "duration", "debounce", "max_tokens", "corpus", "seed",
                  "start_iso", "tags")
    }  # fmt: skip
    verdict = "".join(
        f"<p><b>{html.escape(label)}: {html.escape(summarize_typing(h, r).headline())}</b></p>"
        for label, h, r in runs
    )
    page = _page(title, params, verdict, typing_rows(runs), images)
    (out / "typing.html").write_text(page, encoding="utf-8")
    return {name: str(out / name) for name in (*images, "typing.html")}
