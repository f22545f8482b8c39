"""MACs vs FLOPs and human-readable counts. FLOPs = 2 x MACs, everywhere."""
from __future__ import annotations

from dataclasses import dataclass

from cnncost.errors import CnnCostError

PREFIXES = ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K"))


@dataclass(frozen=True)
class Unit:
    """A unit of work: MACs (multiply-accumulates) or FLOPs (2 per MAC)."""

    name: str
    label: str
    per_mac: int

    def of(self, macs: int) -> int:
        """Convert a MAC count to this unit."""
        return macs * self.per_mac


UNITS = {"macs": Unit("macs", "MACs", 1), "flops": Unit("flops", "FLOPs", 2)}


def unit(name: str) -> Unit:
    """The unit called macs or flops; anything else is an error."""
    try:
        return UNITS[name.lower()]
    except KeyError:
        raise CnnCostError(f"unknown unit {name!r}; choose macs or flops") from None


def human(n: float) -> str:
    """A count with a metric prefix: 112896000 -> 112.9M, 4089184256 -> 4.09G."""
    for scale, prefix in PREFIXES:
        if abs(n) >= scale:
            value = n / scale
            return f"{value:.1f}{prefix}" if abs(value) >= 10 else f"{value:.2f}{prefix}"
    return f"{n:g}" if isinstance(n, float) else str(n)
