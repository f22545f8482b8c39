"""Fit one op class's Rate (a roofline with a fixed cost) to measured times, minimising the relative error.

The model is ``t = fixed_s + max(flops / flops_per_s, bytes / bytes_per_s)``. Write R = flops_per_s / bytes_per_s
(the ridge, in FLOP per byte). For a given R each op's roofline work is ``w = max(flops, R x bytes)`` (its FLOPs,
or the FLOPs its bytes are worth) and the model ``t = fixed_s + w / flops_per_s`` is linear in (fixed_s,
1 / flops_per_s): minimising the relative squared error ``sum(((fixed_s + w / flops_per_s - t) / t)^2)`` is a
weighted linear least squares with a closed form (fixed_s clipped at 0). R itself is found by evaluating that
closed form on a log grid spanning the ops' own FLOP/byte ratios, then a golden-section search between the best
grid point's neighbours. Ridges that fit equally well (the ops all on one side of it, or all of one FLOP/byte
ratio, as elementwise ops are) are a tie, settled by the ridge nearest the device's (peak / bandwidth).

When every op of the class lies on one side of the ridge, the other side is not identified by the data: the
ops being all compute-bound leave bytes_per_s anywhere above flops_per_s / min(flops / bytes), and all
memory-bound leave flops_per_s anywhere above bytes_per_s x max(flops / bytes). The unidentified rate is then
the device's own figure (peak matmul FLOP/s, copy bandwidth), or the least the data allows if that is larger,
so predictions inside the measured range do not change. numpy only, no torch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnncost.speed.device import Rate

GRID_POINTS = 241
GOLDEN_STEPS = 60
TIE = 1e-9  # losses this close (relative) are the same fit, up to rounding
FLOOR = 1e-24  # and losses below this are zero


@dataclass(frozen=True)
class Fit:
    """A fitted rate, its relative errors per point, and which side of the rate the data left unidentified."""

    rate: Rate
    errors: np.ndarray   # (predicted - measured) / measured, per point
    unidentified: str    # '', 'bytes_per_s' or 'flops_per_s'

    @property
    def median_error(self) -> float:
        """The median of the absolute relative errors."""
        return float(np.median(np.abs(self.errors)))


def linear_fit(work: np.ndarray, seconds: np.ndarray) -> tuple[float, float]:
    """(fixed_s, s_per_flop) minimising sum(((fixed_s + s_per_flop x work - t) / t)^2), fixed_s >= 0."""
    design = np.column_stack([1 / seconds, work / seconds])
    (fixed, slope), *_ = np.linalg.lstsq(design, np.ones_like(seconds), rcond=None)
    if fixed < 0 or slope <= 0:
        scaled = work / seconds
        fixed, slope = 0.0, float(scaled.sum() / (scaled @ scaled))
    return float(fixed), float(slope)


def loss(ridge: float, flops: np.ndarray, moved: np.ndarray, seconds: np.ndarray) -> tuple[float, float, float]:
    """(relative squared error, fixed_s, s_per_flop) of the best fit at a given ridge (FLOP per byte)."""
    work = np.maximum(flops, ridge * moved)
    fixed, slope = linear_fit(work, seconds)
    relative = (fixed + slope * work - seconds) / seconds
    return float(relative @ relative), fixed, slope


def best_ridge(flops: np.ndarray, moved: np.ndarray, seconds: np.ndarray, prior: float) -> float:
    """The ridge with the least relative squared error: a log grid, then golden-section between the best grid
    point's neighbours. Ridges that fit equally well (ops all on one side, or all of one FLOP/byte ratio) are a
    tie, settled by the one nearest the prior (the device's peak / bandwidth)."""
    ratios = flops[moved > 0] / moved[moved > 0]
    ratios = ratios[ratios > 0]
    low, high = (ratios.min() / 10, ratios.max() * 10) if ratios.size else (1e-3, 1e3)
    grid = np.geomspace(min(low, prior), max(high, prior), GRID_POINTS)
    losses = np.array([loss(r, flops, moved, seconds)[0] for r in grid])
    tied = np.flatnonzero(losses <= losses.min() * (1 + TIE) + FLOOR)
    i = int(tied[np.argmin(np.abs(np.log(grid[tied] / prior)))])
    a, b = np.log(grid[max(i - 1, 0)]), np.log(grid[min(i + 1, len(grid) - 1)])
    inverse_phi = (np.sqrt(5) - 1) / 2
    best, best_loss = float(grid[i]), float(losses[i])
    for _ in range(GOLDEN_STEPS):
        c, d = b - inverse_phi * (b - a), a + inverse_phi * (b - a)
        lc, ld = (loss(float(np.exp(x)), flops, moved, seconds)[0] for x in (c, d))
        a, b = (a, d) if lc < ld else (c, b)
        for x, value in ((c, lc), (d, ld)):
            if value < best_loss * (1 - TIE) - FLOOR:
                best, best_loss = float(np.exp(x)), value
    return best


def fit_rate(flops, moved, seconds, peak_flops_per_s: float, bandwidth_bytes_per_s: float) -> Fit:
    """The Rate that fits measured (FLOPs, bytes, seconds) points best in relative error (see the module's
    docstring); the device's peak and bandwidth stand in for a side the points leave unidentified."""
    flops, moved, seconds = (np.asarray(v, dtype=float) for v in (flops, moved, seconds))
    if len(seconds) < 2 or np.any(seconds <= 0):
        raise ValueError("a fit needs at least two points with positive times")
    ridge = best_ridge(flops, moved, seconds, peak_flops_per_s / bandwidth_bytes_per_s)
    _, fixed, slope = loss(ridge, flops, moved, seconds)
    flops_per_s = 1 / slope
    bytes_per_s = flops_per_s / ridge
    ratios = flops / np.where(moved > 0, moved, np.inf)
    unidentified = ""
    if np.all(flops >= ridge * moved):  # every op compute-bound: bytes_per_s only bounded below
        unidentified = "bytes_per_s"
        least = flops_per_s / ratios.min() if ratios.min() > 0 else 0.0
        bytes_per_s = max(bandwidth_bytes_per_s, least)
    elif np.all(flops <= ridge * moved):  # every op memory-bound: flops_per_s only bounded below
        unidentified = "flops_per_s"
        flops_per_s = max(peak_flops_per_s, bytes_per_s * ratios.max())
    rate = Rate(flops_per_s, bytes_per_s, fixed)
    predicted = np.array([rate.seconds(f, b) for f, b in zip(flops, moved)])
    errors = (predicted - seconds) / seconds
    median = float(np.median(np.abs(errors)))
    side = {"bytes_per_s": "; all compute-bound, bytes/s not identified",
            "flops_per_s": "; all memory-bound, FLOP/s not identified"}.get(unidentified, "")
    rate.source = f"measured: {len(seconds)} sizes, median error {100 * median:.0f}%{side}"
    return Fit(rate, errors, unidentified)
