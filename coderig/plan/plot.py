"""Price/performance picture: latency (p50, whisker to p99) against monthly cost.

One point per configuration, predicted or measured, so the cheap-and-fast corner is visible
at a glance. Written as a PNG and as a self-contained HTML page (the PNG inlined as base64 and
the numbers as a table: no CDN, no scripts), so it can be mailed or attached to a ticket.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["Point", "write_plot"]


@dataclass(frozen=True)
class Point:
    label: str
    monthly_cost: float
    p50: float
    p99: float
    kind: str = "predicted"  # or "measured"


def _figure(points: list[Point], slo: float | None, title: str):
    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=110)
    styles = {"predicted": ("o", "tab:blue"), "measured": ("s", "tab:red")}
    for kind, (marker, color) in styles.items():
        chosen = [p for p in points if p.kind == kind]
        if not chosen:
            continue
        xs = [p.monthly_cost for p in chosen]
        ys = [p.p50 for p in chosen]
        upper = [max(p.p99 - p.p50, 0.0) for p in chosen]
        ax.errorbar(
            xs,
            ys,
            yerr=[[0.0] * len(chosen), upper],
            fmt=marker,
            color=color,
            ecolor=color,
            elinewidth=1,
            capsize=3,
            label=f"{kind} (p50, whisker to p99)",
        )
        for p in chosen:
            ax.annotate(
                p.label,
                (p.monthly_cost, p.p50),
                textcoords="offset points",
                xytext=(5, 4),
                fontsize=7,
                color=color,
            )
    if slo is not None:
        ax.axhline(slo, color="tab:green", linestyle="--", linewidth=1, label=f"SLO p99 {slo:g}s")
    costs = [p.monthly_cost for p in points if p.monthly_cost > 0]
    if costs and max(costs) / min(costs) > 8:
        ax.set_xscale("log")
    ax.set_xlabel("monthly cost, USD (always on)")
    ax.set_ylabel("full-response latency, s")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def write_plot(
    points: list[Point],
    directory: str | Path,
    *,
    slo: float | None = None,
    title: str = "coderig plan: price / performance",
    stem: str = "price-performance",
) -> tuple[Path, Path]:
    """Write ``<stem>.png`` and ``<stem>.html`` into ``directory``; return their paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"{stem}.png"
    fig = _figure(points, slo, title)
    fig.savefig(png)
    plt.close(fig)
    encoded = base64.b64encode(png.read_bytes()).decode("ascii")
    rows = "\n".join(
        f"<tr><td>{html.escape(p.label)}</td><td>{p.kind}</td>"
        f"<td>{p.monthly_cost:,.0f}</td><td>{p.p50:.3f}</td><td>{p.p99:.3f}</td></tr>"
        for p in sorted(points, key=lambda p: (p.monthly_cost, p.p99))
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-top: 1em; }}
td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
td:first-child, th:first-child, td:nth-child(2) {{ text-align: left; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Latency p50 (marker) with a whisker to p99, against monthly cost. Predicted points come from
the coderig latency model; measured points from <code>coderig bench</code> results.</p>
<img alt="price/performance plot" src="data:image/png;base64,{encoded}">
<table><thead><tr><th>configuration</th><th>kind</th><th>USD / month</th><th>p50 s</th>
<th>p99 s</th></tr></thead><tbody>
{rows}
</tbody></table></body></html>
"""
    page_path = out / f"{stem}.html"
    page_path.write_text(page, encoding="utf-8")
    return png, page_path
