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


def log_ticks(lo: float, hi: float) -> list[float] | None:
    """Tick values for a log axis from lo to hi when fewer than two powers of ten fall inside it: 1-2-5 steps, else
    1..9 steps, else evenly spaced values; None when the powers of ten already label it."""
    import math

    from matplotlib.ticker import MaxNLocator
    lo, hi = sorted((lo, hi))
    if not 0 < lo < hi:
        return None
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    for subs in ((1,), (1, 2, 5), range(1, 10)):
        ticks = [float(f"{s}e{e}") for e in decades for s in subs if lo <= float(f"{s}e{e}") <= hi]
        if len(ticks) >= 2:
            return None if subs == (1,) else ticks
    return [float(f"{v:.3g}") for v in MaxNLocator(4).tick_values(lo, hi) if lo <= v <= hi]


def label_log_axes(ax) -> None:
    """Give every log axis of ax at least two labelled ticks, written plainly (0.5, 2, 20 rather than 5x10^-1);
    call it once the data are plotted (it reads the axis limits). Wide axes keep their powers of ten."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
    for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        ticks = log_ticks(*limits) if axis.get_scale() == "log" else None
        if ticks:
            axis.set_major_locator(FixedLocator(ticks))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())


def plain_log_axes(ax, minor_ticks: bool = True) -> None:
    """Log axes labelled 0.01, 100, 1000 instead of 10^-2, 10^2, 10^3, at 1-2-5 steps where less than two
    decades show (call it once the data are plotted); minor_ticks=False leaves only the labelled ticks (an axis
    over many decades draws no 8 unlabelled marks per decade: they cost as much as the rest of the figure)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter, NullLocator
    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() != "log":
            continue
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())
        if not minor_ticks:
            axis.set_minor_locator(NullLocator())
    label_log_axes(ax)


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
