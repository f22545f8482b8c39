"""Compound scaling made explorable: predicted MACs (base x d x w^2 x r^2) against the exact scaled spec.

EfficientNet scales depth by alpha^phi, width by beta^phi and resolution by gamma^phi, with
alpha = 1.2, beta = 1.1, gamma = 1.15 found on B0 so that alpha x beta^2 x gamma^2 ~ 2: each
step of phi should double the MACs. The exact count drifts from that prediction because
channels round to multiples of 8 and repeats round up, the input size is an integer, and
some layers do not grow with w^2: depthwise convs, the stem (3 input channels) and the
classifier grow with w only.
"""
from __future__ import annotations

import math

import inspect
from typing import Iterable, Sequence

from cnncost.catalog import spec_totals
from cnncost.errors import CnnCostError
from cnncost.specs import MODELS, Builder, ModelEntry, resolve

ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15
# Bounds checked before anything is built: a spec of depth x1e308 would need all memory.
MULTIPLIERS = (0.01, 100.0)  # each of depth, width, resolution
MAX_SIZE = 8192  # input pixels per side
KNOBS = ("width_mult", "depth_mult")
NOTES = [
    "predicted = the base's conv + linear count x d x w^2 x r^2 (alpha=1.2, beta=1.1, gamma=1.15: ~2x per phi)",
    "repeats round up per stage: d=1.1 turns B0's 16 blocks into 23 (stages of 1 block become 2)",
    "channels round to multiples of 8 (never losing more than 10%); the input size rounds to an integer",
    "depthwise convs, the stem (3 input channels) and the classifier grow with w, not w^2",
]


def compound(phi: float, alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA) -> tuple[float, ...]:
    """Depth, width and resolution multipliers of compound coefficient phi: alpha^phi, beta^phi, gamma^phi."""
    return alpha**phi, beta**phi, gamma**phi


def scalable(entry: ModelEntry) -> bool:
    """Whether a model's builder takes width and depth multipliers."""
    return set(KNOBS) <= set(inspect.signature(entry.build).parameters)


def scalable_entry(base: str) -> ModelEntry:
    """The registry entry of a base model that can be scaled, or an error listing the families that can."""
    entry = resolve(base)
    if not scalable(entry):
        families = sorted({e.family for e in MODELS.values() if scalable(e)})
        raise CnnCostError(f"{entry.name} cannot be scaled; bases from these families can: {', '.join(families)}")
    return entry


def exact(entry: ModelEntry, depth: float = 1.0, width: float = 1.0, size: int | None = None) -> dict[str, int]:
    """Totals of the base's builder run with its depth and width multiplied, at an input size."""
    size = entry.resolution if size is None else size
    kwargs = {**entry.kwargs, "width_mult": entry.kwargs.get("width_mult", 1.0) * width,
              "depth_mult": entry.kwargs.get("depth_mult", 1.0) * depth}
    name = f"{entry.name} (depth x{depth:g}, width x{width:g}, {size}x{size})"
    return spec_totals(entry.build(Builder(name, (1, 3, size, size)), **kwargs))


def scale(base: str = "efficientnet_b0", depth: float = 1.0, width: float = 1.0, resolution: float = 1.0,
          phi: float | None = None, label: str = "") -> dict:
    """One scaled model: multipliers, predicted core MACs = base x d x w^2 x r^2, and the exact count."""
    entry = scalable_entry(base)
    size = check_multipliers(entry, depth, width, resolution, phi)
    if phi is not None:
        depth, width, resolution = compound(phi)
    start, scaled = exact(entry), exact(entry, depth, width, size)
    growth = depth * width**2 * resolution**2
    predicted, predicted_params = round(start["core_macs"] * growth), round(start["params"] * depth * width**2)
    return {"model": label or (f"phi={phi:g}" if phi is not None else "custom"), "depth_mult": round(depth, 4), "width_mult": round(width, 4), "resolution_mult": round(resolution, 4),
            "size": size, "d_w2_r2": round(growth, 4), "predicted_core_macs": predicted,
            "core_macs": scaled["core_macs"], "core_macs_vs_predicted": share(scaled["core_macs"], predicted),
            "predicted_params": predicted_params, "params": scaled["params"],
            "params_vs_predicted": share(scaled["params"], predicted_params)}


def share(value: int, predicted: int) -> float | None:
    """value / predicted to 3 decimals (None when nothing was predicted)."""
    return round(value / predicted, 3) if predicted else None


def check_multipliers(entry: ModelEntry, depth: float, width: float, resolution: float,
                      phi: float | None = None) -> int:
    """The scaled input size, or a one-line error when phi or a multiplier is not finite or out of bounds."""
    low, high = MULTIPLIERS
    if phi is not None:
        if not math.isfinite(phi):
            raise CnnCostError(f"multipliers must be positive finite numbers, got phi {phi:g}")
        bases = (ALPHA, BETA, GAMMA)
        lowest = max(math.log(low) / math.log(b) for b in bases)
        highest = min(math.log(high) / math.log(b) for b in bases)
        if not lowest <= phi <= highest:
            raise CnnCostError(f"phi must be between {math.ceil(lowest)} and {math.floor(highest)} (depth, width "
                               f"and resolution multipliers within {low:g}..{high:g}), got {phi:g}")
        depth, width, resolution = compound(phi)
    for name, value in (("depth", depth), ("width", width), ("resolution", resolution)):
        if not (math.isfinite(value) and value > 0):
            raise CnnCostError(f"multipliers must be positive finite numbers, got depth {depth:g}, width "
                               f"{width:g}, resolution {resolution:g}")
        if name != "resolution" and not low <= value <= high:  # resolution: the input size is bounded below
            raise CnnCostError(f"the {name} multiplier must be between {low:g} and {high:g}, got {value:g}")
    size = round(entry.resolution * resolution)
    if size < 1:
        raise CnnCostError(f"resolution x{resolution:g} of {entry.resolution} leaves no pixels")
    if size > MAX_SIZE:
        raise CnnCostError(f"resolution x{resolution:g} of {entry.resolution} gives {size} px; at most {MAX_SIZE}")
    return size


def series(base: str = "efficientnet_b0", phis: Iterable[float] = range(8)) -> list[dict]:
    """Compound scaling of a base for several phi."""
    return [scale(base, phi=phi) for phi in phis]


def published(base: str = "efficientnet_b0") -> list[dict]:
    """The registered siblings of a base (EfficientNet-B1..B7) as multipliers of it, predicted against exact."""
    entry = scalable_entry(base)
    fixed = lambda e: {k: v for k, v in e.kwargs.items() if k not in KNOBS}  # noqa: E731
    siblings = [e for e in MODELS.values() if e.build is entry.build and fixed(e) == fixed(entry)]
    return [scale(entry.name, e.kwargs.get("depth_mult", 1.0) / entry.kwargs.get("depth_mult", 1.0),
                  e.kwargs.get("width_mult", 1.0) / entry.kwargs.get("width_mult", 1.0),
                  e.resolution / entry.resolution, label=e.name) for e in siblings]


def calculate(base: str = "efficientnet_b0", phi: float | Sequence[float] | None = None,
              depth: float | None = None, width: float | None = None, resolution: float | None = None,
              published_only: bool = False) -> list[dict]:
    """The calculator: one phi or several (default 0..7), or explicit multipliers (unset ones 1), or the
    registered siblings (EfficientNet-B0..B7) as multipliers of the base; only one of the three."""
    explicit = [m for m in (depth, width, resolution) if m is not None]
    if sum(map(bool, (phi is not None, explicit, published_only))) > 1:
        raise CnnCostError("give phi, or depth/width/resolution multipliers, or published, not several")
    if published_only:
        return published(base)
    if explicit:
        return [scale(base, *(1.0 if m is None else m for m in (depth, width, resolution)))]
    phis = range(8) if phi is None else [phi] if isinstance(phi, (int, float)) else phi
    return series(base, phis)
