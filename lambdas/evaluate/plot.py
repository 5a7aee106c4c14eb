"""The confusion-matrix PNG stored beside the evaluation result.

matplotlib (Agg backend, no display) rather than OpenCV drawing: it gives labelled axes,
a colour scale and readable counts in a few lines, and its wheel plus numpy is a fraction
of opencv-python-headless's size in the Lambda zip. Imported only here, when the PNG is
drawn, so the rest of the handler does not pay matplotlib's import time.
"""
from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Sequence


def confusion_matrix_png(matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str) -> bytes:
    """PNG bytes: rows true classes, columns predicted, cells shaded by the row's share, labelled with counts."""
    # Lambda's home is read-only; matplotlib wants a writable cache directory
    os.environ.setdefault("MPLCONFIGDIR", os.path.join(tempfile.gettempdir(), "matplotlib"))
    import numpy as np
    from matplotlib.figure import Figure  # no pyplot: no global figure registry, no GUI backend

    counts = np.asarray(matrix, dtype=np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=np.float64), where=totals > 0)
    size = 1.2 + 0.55 * len(classes)
    figure = Figure(figsize=(size + 1.2, size), dpi=100)
    axes = figure.subplots()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of true class")
    axes.set_xticks(range(len(classes)), labels=classes, rotation=45, ha="right")
    axes.set_yticks(range(len(classes)), labels=classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for row in range(len(classes)):
        for column in range(len(classes)):
            if counts[row, column]:
                colour = "white" if shares[row, column] > 0.5 else "black"
                axes.text(column, row, str(counts[row, column]), ha="center", va="center", color=colour, fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
