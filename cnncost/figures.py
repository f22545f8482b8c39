"""Deterministic matplotlib figures for reports and benchmark plots: same data, same bytes."""
from __future__ import annotations

import io
from pathlib import Path

from cnncost.output import write_atomic

METADATA = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None}}
STYLE = {"svg.hashsalt": "cnncost", "figure.dpi": 100, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3}


def pyplot():
    """matplotlib.pyplot on the Agg backend with the fixed, reproducible style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(STYLE)
    return plt


def write_figure(fig, path: Path) -> Path:
    """Write a figure as PNG or SVG (by suffix) without timestamps or version strings, atomically."""
    fmt = path.suffix.lstrip(".")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, metadata=METADATA[fmt], bbox_inches="tight")
    write_atomic(path, buffer.getvalue())
    return path


def save_formats(fig, stem: Path, formats=("png", "svg")) -> list[Path]:
    """Write the figure in each format next to stem (stem.png, stem.svg), then close it."""
    written = [write_figure(fig, stem.with_name(f"{stem.name}.{fmt}")) for fmt in formats]
    pyplot().close(fig)
    return written


def save(fig, path: str | Path) -> Path:
    """Write the figure to one file (format by suffix), then close it."""
    path = Path(path)
    return save_formats(fig, path.with_suffix(""), (path.suffix.lstrip("."),))[0]
