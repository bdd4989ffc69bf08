"""Sweep charts: latency percentiles vs rate and a latency CDF per rate, as PNG and one HTML page.

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
from matplotlib.ticker import FuncFormatter  # noqa: E402

from coderig.bench.sweep import Sweep  # noqa: E402
from coderig.units import vegeta_duration  # noqa: E402


def _latencies(results: list[dict]) -> np.ndarray:
    return np.array(
        [
            r["end"] - r["sent"]
            for r in results
            if not r.get("not_sent") and r["sent"] is not None and r["end"] is not None
        ]
    )


def percentiles_figure(sweep: Sweep) -> Any:
    steps = sweep.by_rate()
    rates = [s.rate for s in steps]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for key, style in (("50th", "o-"), ("90th", "s-"), ("99th", "^-")):
        ax.plot(rates, [s.summary["latencies"][key] for s in steps], style, label=f"p{key[:-2]}")
    if any(s.summary["ttft"]["n"] for s in steps):
        for key, style in (("50th", "o--"), ("99th", "^--")):
            ax.plot(
                rates,
                [s.summary["ttft"][key] for s in steps],
                style,
                alpha=0.7,
                label=f"TTFT p{key[:-2]}",
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
        if s.summary["success"] == s.summary["success"] and s.summary["success"] < 0.995:
            ax.annotate(
                f"{s.summary['success']:.0%} ok",
                (s.rate, s.summary["latencies"]["99th"]),
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
        lat = m["latencies"]
        rows.append(
            {
                "rate": f"{s.rate:g}",
                "achieved": f"{m['rate']:.2f}",
                "requests": str(m["requests"]),
                "p50": vegeta_duration(lat["50th"]),
                "p90": vegeta_duration(lat["90th"]),
                "p99": vegeta_duration(lat["99th"]),
                "ttft p50": vegeta_duration(m["ttft"]["50th"]) if m["ttft"]["n"] else "-",
                "throughput": f"{m['throughput']:.2f}",
                "tok/s": f"{m['output_tokens_per_second']['run']:.1f}"
                if m["completion_tokens"]["n"]
                else "-",
                "success": f"{m['success'] * 100:.2f}%",
                "not sent": str(m["not_sent"]),
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
    rows = table_rows(sweep)
    head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0]) if rows else ""
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r.values()) + "</tr>" for r in rows
    )
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
