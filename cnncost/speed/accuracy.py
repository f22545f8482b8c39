"""How well predicted speeds match measured ones: the figures every validation of predict reports. numpy only.

- relative error of one prediction: |predicted - measured| / measured (of img/s; the same as of latency to
  first order), summarised by its median and 90th percentile;
- Spearman's rank correlation of predicted and measured speeds;
- pairs: of the pairs of models whose measured speeds lie within 1.5x of each other, the share whose faster
  model the prediction names;
- the baseline "1/MACs": speed = k / MACs with the k that gives the smallest median error.
"""
from __future__ import annotations

import numpy as np

CLOSE = 1.5  # models within this factor of each other's measured speed make a "close" pair


def relative_errors(predicted, measured) -> np.ndarray:
    """|predicted - measured| / measured, element-wise."""
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    return np.abs(p - m) / m


def ranks(values) -> np.ndarray:
    """Ranks 1..n, ties sharing their mean rank (as Spearman's coefficient needs)."""
    v = np.asarray(values, dtype=float)
    order = np.argsort(v, kind="mergesort")
    _, first, counts = np.unique(v[order], return_index=True, return_counts=True)
    r = np.empty(len(v))
    r[order] = np.repeat(first + (counts + 1) / 2, counts)  # each run of equal values: its mean 1-based rank
    return r


def spearman(a, b) -> float:
    """Spearman's rank correlation: Pearson's correlation of the ranks."""
    ra, rb = ranks(a), ranks(b)
    if len(ra) < 2 or ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def close_pairs_right(predicted, measured, close: float = CLOSE) -> tuple[float, int]:
    """Of the pairs whose measured speeds are within `close`x of each other (and not equal), the share whose
    faster model is also predicted faster, and how many such pairs there are."""
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    i, j = np.triu_indices(len(m), k=1)
    ratio = np.maximum(m[i], m[j]) / np.minimum(m[i], m[j])
    keep = (ratio <= close) & (m[i] != m[j])
    if not keep.any():
        return float("nan"), 0
    right = np.sign(p[i] - p[j])[keep] == np.sign(m[i] - m[j])[keep]
    return float(right.mean()), int(keep.sum())


def best_scale(predicted, measured) -> np.ndarray:
    """k x predicted with the k whose median relative error is smallest (the prediction's shape, not its level)."""
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    scales = np.median(m / p) * np.exp(np.linspace(-1.0, 1.0, 401))
    return min(scales, key=lambda k: np.median(relative_errors(k * p, m))) * p


def macs_baseline(macs, measured) -> np.ndarray:
    """The 1/MACs prediction of speed, k / MACs with the k whose median relative error is smallest."""
    return best_scale(1.0 / np.asarray(macs, dtype=float), measured)


def summary(predicted, measured) -> dict:
    """Median and 90th-percentile relative error, Spearman, and close pairs named right."""
    errors = relative_errors(predicted, measured)
    share, pairs = close_pairs_right(predicted, measured)
    return {"models": int(len(errors)), "median_error": float(np.median(errors)),
            "p90_error": float(np.percentile(errors, 90)), "spearman": spearman(predicted, measured),
            "close_pairs_right": share, "close_pairs": pairs}


def describe(s: dict) -> str:
    """A summary as one line of text."""
    return (f"{s['models']} models, median error {s['median_error']:.1%}, p90 {s['p90_error']:.1%}, Spearman "
            f"{s['spearman']:.4f}, close pairs right {s['close_pairs_right']:.1%} of {s['close_pairs']}")


def with_baseline(predicted, measured, macs, rescaled: bool = False) -> dict:
    """The summary of a prediction and of 1/MACs (best scale) on the same measurements; with `rescaled`, also of
    the prediction at its best scale (what is left when the device's level is off, e.g. a busy machine)."""
    figures = {"predict": summary(predicted, measured)}
    if rescaled:
        figures["predict, best scale"] = summary(best_scale(predicted, measured), measured)
    figures["1/MACs"] = summary(macs_baseline(macs, measured), measured)
    return figures
