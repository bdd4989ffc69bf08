"""Price/performance picture: latency (p50, whisker to p99) against monthly cost.

It answers one question at a glance: which options are worth paying for. Those are the Pareto
front (no other option is as cheap and at least as fast at p50 and p99), drawn solid, outlined
and labelled; every other option is faded and unlabelled, since something on the front beats
it. Colour says the GPU and the marker the weight dtype, so "the same GPU in fp8" or "every
int4" can be followed without reading a label. Labels are placed one by one where they
overlap no other label, marker or the axes' edge (a greedy search over a few positions around
the point), so they never cover each other however many options are plotted.

Written as a PNG and as a self-contained HTML page (the PNG inlined as base64 and the numbers
as a table: no CDN, no scripts), so it can be mailed or attached to a ticket.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from coderig.plan.report import PricePoint  # noqa: E402

__all__ = ["PricePoint", "figure", "pareto_front", "write_plot", "FADED_ALPHA"]

#: Opacity of options off the front and of measured runs: visible for context, not read first.
FADED_ALPHA = 0.25
DTYPE_MARKERS = {"bf16": "o", "fp8": "s", "int4": "^"}
OTHER_MARKERS = ("D", "v", "P", "X", "h")
#: Offsets (points) tried in order for a label, nearest first: right, left, above, below,
#: then further out. Distances grow so a crowded front still finds room.
_OFFSETS = [
    (dx * r, dy * r)
    for r in (1.0, 2.2, 3.6, 5.2)
    for dx, dy in ((7, 5), (7, -12), (-7, 5), (-7, -12), (0, 11), (0, -18), (12, -3), (-12, -3))
]


def pareto_front(points: Sequence[PricePoint]) -> list[PricePoint]:
    """Predicted points no other predicted point dominates (as cheap or cheaper, as fast or
    faster at both p50 and p99, and better in one), cheapest first."""
    predicted = [p for p in points if p.kind == "predicted"]

    def dominates(a: PricePoint, b: PricePoint) -> bool:
        no_worse = a.monthly_cost <= b.monthly_cost and a.p50 <= b.p50 and a.p99 <= b.p99
        better = a.monthly_cost < b.monthly_cost or a.p50 < b.p50 or a.p99 < b.p99
        return no_worse and better

    front = [p for p in predicted if not any(dominates(q, p) for q in predicted)]
    return sorted(front, key=lambda p: (p.monthly_cost, p.p50))


#: Saturated, mutually distinct colours (tab10 and four darker ones): one per GPU, readable
#: faded and as a marker edge. More GPUs than colours reuse them with other markers' help.
GPU_COLOURS = (
    *(plt.get_cmap("tab10")(i) for i in range(10)),
    "#1b1b6b",
    "#6b4b00",
    "#006b5b",
    "#6b006b",
)
MEASURED_MARKER = "*"


def _styles(points: Sequence[PricePoint]) -> tuple[dict[str, tuple], dict[str, str]]:
    """A colour per GPU and a marker per dtype, both in sorted order so a plot of the same
    catalog always gives a GPU the same colour."""
    gpus = sorted({p.gpu for p in points})
    colours = {gpu: GPU_COLOURS[i % len(GPU_COLOURS)] for i, gpu in enumerate(gpus)}
    markers: dict[str, str] = {}
    others = iter(OTHER_MARKERS * 4)
    for dtype in sorted({p.dtype for p in points}):
        markers[dtype] = DTYPE_MARKERS.get(dtype) or next(others)
    return colours, markers


def _label_text(p: PricePoint) -> str:
    return f"{p.label}: ${p.monthly_cost:,.0f}/mo, p99 {p.p99:.2f} s"


def _overlap(a: Bbox, b: Bbox) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _place_labels(fig: Figure, ax, front: Sequence[PricePoint], colours: dict) -> None:
    """Annotate each front point at the first offset whose text box overlaps no placed label,
    no marker and stays inside the axes; if none is free, the least-overlapping one."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    pad = 4.0
    markers = []
    for line in ax.lines:
        if str(line.get_gid() or "").startswith("point:"):
            x, y = ax.transData.transform((line.get_xdata()[0], line.get_ydata()[0]))
            markers.append(Bbox.from_extents(x - pad, y - pad, x + pad, y + pad))
    placed: list[Bbox] = []
    for p in front:
        best = None
        for dx, dy in _OFFSETS:
            ann = ax.annotate(
                _label_text(p),
                (p.monthly_cost, p.p50),
                textcoords="offset points",
                xytext=(dx, dy),
                ha="left" if dx > 0 else "right" if dx < 0 else "center",
                fontsize=7.5,
                color="#222222",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75},
                gid=f"label:{p.label}",
                arrowprops=None
                if abs(dx) + abs(dy) < 20
                else {"arrowstyle": "-", "color": colours[p.gpu], "lw": 0.6},
            )
            box = ann.get_window_extent(renderer).expanded(1.04, 1.1)
            outside = (
                box.x0 < inside.x0 or box.x1 > inside.x1 or box.y0 < inside.y0 or box.y1 > inside.y1
            )
            cost = sum(_overlap(box, other) for other in placed + markers)
            cost += 1e6 if outside else 0.0
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, ann, box)
            else:
                ann.remove()
            if cost == 0.0:
                break
        if best is not None:
            placed.append(best[2])


def figure(points: Sequence[PricePoint], slo: float | None, title: str) -> Figure:
    """The price/performance figure (also what the tests inspect)."""
    fig, ax = plt.subplots(figsize=(11, 6.5), dpi=110)
    colours, markers = _styles(points)
    front = pareto_front(points)
    on_front = {id(p) for p in front}
    for p in sorted(points, key=lambda p: id(p) in on_front):  # the front drawn on top
        highlighted = id(p) in on_front
        measured = p.kind == "measured"
        alpha = 1.0 if highlighted else FADED_ALPHA
        colour = colours[p.gpu]
        line, caps, bars = ax.errorbar(
            [p.monthly_cost],
            [p.p50],
            yerr=[[0.0], [max(p.p99 - p.p50, 0.0)]],
            fmt=MEASURED_MARKER if measured else markers[p.dtype],
            color=colour,
            markerfacecolor="none" if measured else colour,
            markeredgecolor="black" if highlighted else colour,
            markeredgewidth=1.2 if highlighted else 1.0,
            markersize=(9 if highlighted else 7) + (4 if measured else 0),
            elinewidth=1.2 if highlighted else 0.8,
            capsize=3,
            alpha=alpha,
            zorder=3 if highlighted else 2,
        )
        line.set_gid(f"point:{p.label}")
        for artist in (*caps, *bars):
            artist.set_alpha(alpha)
    if len(front) > 1:
        ax.plot(
            [p.monthly_cost for p in front],
            [p.p50 for p in front],
            color="black",
            linewidth=0.8,
            linestyle=":",
            zorder=1,
            gid="front",
        )
    if slo is not None:
        ax.axhline(slo, color="tab:green", linestyle="--", linewidth=1)
    costs = [p.monthly_cost for p in points if p.monthly_cost > 0]
    if costs and max(costs) / min(costs) > 8:
        ax.set_xscale("log")
    if points:
        low = min(p.p50 for p in points)
        high = max([p.p99 for p in points] + ([slo] if slo else []))
        ax.set_ylim(max(0.0, low - 0.12 * (high - low)), high + 0.08 * (high - low))
    ax.set_xlabel("monthly cost, USD (always on)")
    ax.set_ylabel("full-response latency, s (p50 marker, whisker to p99)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    _legends(ax, colours, markers, slo, any(p.kind == "measured" for p in points))
    fig.tight_layout()
    _place_labels(fig, ax, front, colours)
    return fig


def _legends(ax, colours: dict, markers: dict, slo: float | None, measured: bool) -> None:
    """GPU colours and dtype markers as two legends beside the axes, where no point is."""
    gpu_handles = [
        Line2D([], [], marker="o", linestyle="", color=c, label=gpu) for gpu, c in colours.items()
    ]
    kind_handles = [
        Line2D([], [], marker=m, linestyle="", color="dimgray", label=d) for d, m in markers.items()
    ]
    kind_handles.append(
        Line2D(
            [],
            [],
            marker="o",
            linestyle=":",
            color="black",
            markerfacecolor="white",
            label="Pareto front (labelled)",
        )
    )
    kind_handles.append(
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            color="dimgray",
            alpha=FADED_ALPHA,
            label="dominated option",
        )
    )
    if measured:
        kind_handles.append(
            Line2D(
                [],
                [],
                marker=MEASURED_MARKER,
                markersize=10,
                linestyle="",
                color="dimgray",
                markerfacecolor="none",
                label="measured run (its own load)",
            )
        )
    if slo is not None:
        kind_handles.append(
            Line2D([], [], color="tab:green", linestyle="--", label=f"SLO p99 {slo:g} s")
        )
    first = ax.legend(
        handles=gpu_handles,
        title="GPU",
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        title_fontsize=8,
    )
    ax.add_artist(first)
    ax.legend(
        handles=kind_handles,
        title="dtype / kind",
        loc="lower left",
        bbox_to_anchor=(1.01, 0.0),
        fontsize=8,
        title_fontsize=8,
    )


def write_plot(
    points: Sequence[PricePoint],
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
    fig = figure(points, slo, title)
    fig.savefig(png)
    plt.close(fig)
    front = {id(p) for p in pareto_front(points)}
    encoded = base64.b64encode(png.read_bytes()).decode("ascii")
    rows = "\n".join(
        f"<tr><td>{html.escape(p.label)}</td><td>{p.kind}</td>"
        f"<td>{'yes' if id(p) in front else ''}</td>"
        f"<td>{p.monthly_cost:,.0f}</td><td>{p.p50:.3f}</td><td>{p.p99:.3f}</td></tr>"
        for p in sorted(points, key=lambda p: (p.monthly_cost, p.p99))
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-top: 1em; }}
td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
td:first-child, th:first-child, td:nth-child(2), td:nth-child(3) {{ text-align: left; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Latency p50 (marker) with a whisker to p99, against monthly cost. Labelled, solid points
are the Pareto front: no other option is as cheap and as fast. Faded points are dominated.
Colour is the GPU, the marker the weight dtype. Predicted points come from the coderig
latency model; measured points from published runs or <code>coderig bench</code> results, at
the load they were measured at.</p>
<img alt="price/performance plot" src="data:image/png;base64,{encoded}">
<table><thead><tr><th>configuration</th><th>kind</th><th>Pareto front</th><th>USD / month</th>
<th>p50 s</th><th>p99 s</th></tr></thead><tbody>
{rows}
</tbody></table></body></html>
"""
    page_path = out / f"{stem}.html"
    page_path.write_text(page, encoding="utf-8")
    return png, page_path
