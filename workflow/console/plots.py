"""The run report's charts, drawn by matplotlib and returned as inline SVG text.

SVG keeps the report one self-contained file that stays sharp when zoomed; text stays
text (svg.fonttype none), so the file is small and searchable. The Agg backend is set
before pyplot is imported: the console runs without a display.

Labels are text, never mathtext: state names, class names and driver ids come from the
user's data, and a `$` in one (`$\\undefinedmacro{$`) would otherwise be parsed as TeX and
crash the report (text.parse_math off, usetex off).
"""
from __future__ import annotations

import io
import re
from typing import Any, Sequence

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
from matplotlib.figure import Figure  # noqa: E402

matplotlib.rcParams.update({
    "svg.fonttype": "none", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 100, "svg.hashsalt": "ddcicd",
    "text.parse_math": False, "text.usetex": False,
})  # fmt: skip
HISTOGRAM_BARS = 50
BLUE, ORANGE, GREEN, RED, GREY = "#2f7de1", "#e8871e", "#1e8e4f", "#cf2e2e", "#8d97a8"


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = buffer.getvalue()
    text = re.sub(r"^.*?(<svg)", r"\1", text, flags=re.S)  # drop the XML prolog and DOCTYPE: inline in HTML
    return re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)  # creator/date RDF: noise in a report


def grouped_bars(categories: Sequence[str], series: dict[str, Sequence[float]], ylabel: str, title: str,
                 stacked: bool = False) -> str:
    """Bars per category, one colour per series (images per class, train vs validation);
    stacked when the series do not overlap (each driver is in one split only)."""
    figure, axes = plt.subplots(figsize=(min(12.0, max(5.0, 0.45 * len(categories) + 2)), 2.8))
    width = 0.8 if stacked else 0.8 / max(1, len(series))
    bottom = [0.0] * len(categories)
    for offset, ((label, values), colour) in enumerate(zip(series.items(), (BLUE, ORANGE, GREEN, GREY))):
        if stacked:
            axes.bar(range(len(categories)), values, width, bottom=bottom, label=label, color=colour)
            bottom = [base + value for base, value in zip(bottom, values)]
            continue
        positions = [index + (offset - (len(series) - 1) / 2) * width for index in range(len(categories))]
        axes.bar(positions, values, width, label=label, color=colour)
    axes.set_xticks(range(len(categories)), categories, rotation=45 if len(categories) > 12 else 0)
    axes.set_ylabel(ylabel)
    axes.set_title(title, loc="left")
    axes.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.grid(axis="x", visible=False)
    return _svg(figure)


def training_curves(epochs: list[dict[str, Any]]) -> str:
    """Loss and accuracy per epoch, train against validation, side by side."""
    figure, (loss, accuracy) = plt.subplots(1, 2, figsize=(8.5, 2.9))
    numbers = [row.get("epoch", index) for index, row in enumerate(epochs)]
    for axes, metric, title in ((loss, "loss", "Loss"), (accuracy, "accuracy", "Accuracy")):
        for split, colour in (("train", BLUE), ("validation", ORANGE)):
            values = [row.get(f"{split}_{metric}") for row in epochs]
            points = [(epoch, value) for epoch, value in zip(numbers, values) if value is not None]
            if points:
                axes.plot(*zip(*points), marker="o", markersize=3, color=colour, label=split)
        axes.set_title(title, loc="left")
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axes.legend(frameon=False)
    accuracy.set_ylim(0, 1)
    return _svg(figure)


def confusion_matrix(matrix: list[list[int]], classes: list[str]) -> str:
    """Counts with the row-normalised share as colour: rows are true classes, columns predictions."""
    import numpy as np

    counts = np.asarray(matrix, dtype=float)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(3.2, 0.42 * len(classes) + 1.4)
    figure, axes = plt.subplots(figsize=(size + 0.8, size))
    image = axes.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for row in range(counts.shape[0]):
        for column in range(counts.shape[1]):
            if counts[row, column]:
                axes.text(column, row, f"{int(counts[row, column])}", ha="center", va="center", fontsize=8,
                          color="white" if share[row, column] > 0.55 else "#1d2330")  # fmt: skip
    axes.set_xticks(range(len(classes)), classes)
    axes.set_yticks(range(len(classes)), classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.grid(False)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the true class")
    return _svg(figure)


def latency_histogram(buckets: list[tuple[float, float, int]], percentiles: dict[str, float], slo_ms: float | None) -> str:
    """Requests per latency bucket (log x axis), percentiles and the SLO as vertical lines."""
    import numpy as np

    figure, axes = plt.subplots(figsize=(8.5, 2.9))
    # the recorded buckets are far finer than a chart needs: regroup them into ~50 log-spaced bars
    middles = np.array([(low + high) / 2 for low, high, _ in buckets])
    counts = np.array([count for _, _, count in buckets])
    low, high = max(float(middles.min()), 1e-3), float(middles.max())
    edges = np.geomspace(low * 0.98, high * 1.02 if high > low else low * 1.1, HISTOGRAM_BARS + 1)
    totals, _ = np.histogram(np.clip(middles, edges[0], edges[-1]), bins=edges, weights=counts)
    axes.bar(edges[:-1], totals, np.diff(edges), align="edge", color=BLUE, edgecolor="white", linewidth=0.4)
    axes.set_xscale("log")
    for (label, value), colour in zip(percentiles.items(), (GREEN, ORANGE, RED, GREY, GREY)):
        axes.axvline(value, color=colour, linewidth=1, linestyle="--", label=f"{label} {value:.1f} ms")
    if slo_ms:
        axes.axvline(slo_ms, color="black", linewidth=1.2, label=f"SLO p99 {slo_ms:g} ms")
    axes.set_xlabel("latency (ms, log scale)")
    axes.set_ylabel("requests")
    axes.set_title("Load-test latency", loc="left")
    axes.legend(frameon=False, fontsize=8)
    return _svg(figure)


def state_times(names: list[str], seconds: list[float], statuses: list[str]) -> str:
    """Horizontal bars, one per state in the order they ran, coloured by how they ended."""
    colours = {"succeeded": GREEN, "failed": RED, "caught": ORANGE, "running": BLUE}
    figure, axes = plt.subplots(figsize=(8.5, 0.24 * len(names) + 0.8))
    axes.barh(range(len(names)), seconds, color=[colours.get(status, GREY) for status in statuses])
    axes.set_yticks(range(len(names)), names)
    axes.invert_yaxis()
    axes.set_xlabel("seconds")
    axes.grid(axis="y", visible=False)
    for index, value in enumerate(seconds):
        axes.text(value, index, f" {value:.1f} s", va="center", fontsize=8)
    axes.margins(x=0.12)
    axes.set_xlim(left=0)
    return _svg(figure)
