"""Deterministic matplotlib figures: same data, same bytes."""
from __future__ import annotations

import io
from pathlib import Path

from cnncost.output import write_atomic


def pyplot():
    """matplotlib.pyplot on the Agg backend with fixed, reproducible settings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "cnncost", "figure.dpi": 100, "font.size": 9,
                         "axes.grid": True, "grid.alpha": 0.3})
    return plt


def save(fig, path: str | Path) -> None:
    """Save a figure as PNG or SVG without timestamps or version strings, atomically, and close it."""
    path = Path(path)
    fmt = path.suffix.lstrip(".")
    metadata = {"Date": None, "Creator": None} if fmt == "svg" else {"Software": None}
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, metadata=metadata, bbox_inches="tight")
    pyplot().close(fig)
    write_atomic(path, buffer.getvalue())
