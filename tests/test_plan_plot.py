"""The price/performance plot reads at a glance: checked on the figure's own artists."""

import itertools

import matplotlib.pyplot as plt
import pytest

from coderig.plan.plot import figure, pareto_front, write_plot
from coderig.plan.report import PricePoint

GPUS = ["a100-80gb", "h100-sxm", "l40s", "rtx-4090", "l4", "mi300x"]
DTYPES = ["bf16", "fp8", "int4"]


def crowded_points() -> list[PricePoint]:
    """18 options, many close together, with a front of several nearby points."""
    points = []
    for i, (gpu, dtype) in enumerate(itertools.product(GPUS, DTYPES)):
        cost = 1500.0 * (1.12**i)
        # Every third option is on a falling staircase (the front); the others sit above it.
        p50 = 1.3 - 0.045 * i if i % 3 == 0 else 1.35 - 0.02 * i
        points.append(PricePoint(f"{i % 4 + 1}x {gpu} {dtype}", gpu, dtype, cost, p50, p50 + 0.2))
    points.append(
        PricePoint("measured 1x h100-sxm", "h100-sxm", "bf16", 2153.0, 0.96, 0.97, "measured")
    )
    return points


@pytest.fixture(scope="module")
def drawn():
    points = crowded_points()
    fig = figure(points, 1.5, "test")
    fig.canvas.draw()
    yield fig, fig.axes[0], points
    plt.close(fig)


def _lines(ax):
    return {
        line.get_gid()[len("point:") :]: line
        for line in ax.lines
        if str(line.get_gid()).startswith("point:")
    }


def test_pareto_front_keeps_only_undominated_predicted_points():
    cheap_slow = PricePoint("a", "g1", "bf16", 100, 1.0, 1.2)
    dear_fast = PricePoint("b", "g2", "bf16", 200, 0.5, 0.6)
    dominated = PricePoint("c", "g3", "bf16", 300, 0.8, 0.9)
    tail_worse = PricePoint("d", "g4", "bf16", 200, 0.5, 0.9)  # same p50, worse p99 than b
    measured = PricePoint("m", "g1", "bf16", 50, 0.1, 0.1, "measured")
    front = pareto_front([dominated, dear_fast, cheap_slow, tail_worse, measured])
    assert [p.label for p in front] == ["a", "b"]


def test_labelled_points_are_exactly_the_pareto_front(drawn):
    _, ax, points = drawn
    front = {p.label for p in pareto_front(points)}
    assert len(front) >= 5
    labels = {
        t.get_gid()[len("label:") :] for t in ax.texts if str(t.get_gid()).startswith("label:")
    }
    assert labels == front
    assert len([t for t in ax.texts if t.get_visible()]) == len(front)


def test_labels_do_not_overlap_each_other_or_leave_the_axes(drawn):
    fig, ax, _ = drawn
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    inside = ax.get_window_extent(renderer)
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)
    for box in boxes:
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1
        assert inside.y0 <= box.y0 and box.y1 <= inside.y1


def test_options_off_the_front_are_faded(drawn):
    _, ax, points = drawn
    front = {p.label for p in pareto_front(points)}
    lines = _lines(ax)
    assert set(lines) == {p.label for p in points}
    front_alpha = {lines[label].get_alpha() for label in front}
    other_alpha = {line.get_alpha() for label, line in lines.items() if label not in front}
    assert max(other_alpha) < min(front_alpha)


def test_gpu_is_a_colour_and_dtype_a_marker(drawn):
    _, ax, points = drawn
    lines = _lines(ax)
    predicted = [p for p in points if p.kind == "predicted"]
    colour = {p.gpu: lines[p.label].get_color() for p in predicted}
    marker = {p.dtype: lines[p.label].get_marker() for p in predicted}
    assert len(set(map(str, colour.values()))) == len(GPUS)
    assert len(set(marker.values())) == len(DTYPES)
    for p in predicted:  # one GPU keeps one colour whatever the dtype, and vice versa
        assert lines[p.label].get_color() == colour[p.gpu]
        assert lines[p.label].get_marker() == marker[p.dtype]
    measured = next(p for p in points if p.kind == "measured")
    assert lines[measured.label].get_marker() not in marker.values()


def test_write_plot_marks_the_front_in_the_html_table(tmp_path):
    points = crowded_points()
    png, page = write_plot(points, tmp_path, slo=1.5)
    assert png.stat().st_size > 10_000
    text = page.read_text()
    assert text.count("<td>yes</td>") == len(pareto_front(points))
