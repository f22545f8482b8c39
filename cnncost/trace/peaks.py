"""A training step's peak memory at any batch, replayed from the storages of two or three traced steps.

On the meta device a step allocates and frees the same storages in the same order at every batch; only their
sizes change. In a CNN each storage is either as large at every batch (weights, gradients, per-channel
statistics) or proportional to the batch (activations, the batch itself). Two traced steps show both: the order
of every allocation, free and change of category, and each storage's bytes, which must be constant or exactly
proportional between the two. A storage that is neither (batch x bytes + a constant, say) needs a third step: the
bytes are then fitted as affine on two batches and checked exactly on the third. The peak at another batch is a
running sum over that order with the sizes at that batch, rounded to the allocator's block: milliseconds instead
of a traced step. Where the order or a size does not follow, there is no model and the caller traces.
"""
from __future__ import annotations

import numpy as np

# (storage key, bytes, category) as a storage appears; (key, FREED, None) as it dies; (key, MOVED, category) as
# its bytes change category (a gradient becoming .grad)
Events = list[tuple[int, int, "str | None"]]
FREED, MOVED = -1, -2


def normalised(events: Events) -> tuple[list[tuple[int, int, str | None, str | None]], list[int]]:
    """The events with storages numbered by first appearance (keys are addresses, reused once freed): the order
    as (storage number, +1 allocated / -1 freed / 0 moved, category before, category after), and each storage's
    bytes."""
    numbers: dict[int, int] = {}
    held: dict[int, str] = {}
    order, sizes = [], []
    for key, nbytes, category in events:
        if nbytes >= 0:
            numbers[key] = number = len(sizes)
            sizes.append(nbytes)
            held[number] = category
            order.append((number, 1, None, category))
        elif nbytes == FREED:
            number = numbers.pop(key)
            order.append((number, -1, held.pop(number), None))
        else:
            number = numbers[key]
            order.append((number, 0, held[number], category))
            held[number] = category
    return order, sizes


def coefficients(steps: dict[int, list[int]]) -> tuple[np.ndarray, np.ndarray] | None:
    """Each storage's bytes as alpha x batch + beta from its bytes at each traced batch: from two batches, only
    constant or proportional bytes; from three or more, affine on the outer two and exact on the others."""
    batches = sorted(steps)
    low, high = batches[0], batches[-1]
    small, large = (np.array(steps[b], dtype=np.int64) for b in (low, high))
    if len(batches) == 2:
        constant = small == large
        proportional = (small * high == large * low) & (small % low == 0)
        if not (constant | proportional).all():
            return None
        alpha = np.where(constant, 0, small // low)
        return alpha, np.where(constant, small, 0)
    growth = large - small
    if (growth % (high - low)).any():
        return None
    alpha = growth // (high - low)
    beta = small - alpha * low
    if any((alpha * b + beta != np.array(steps[b], dtype=np.int64)).any() for b in batches[1:-1]):
        return None
    return alpha, beta


class AffinePeaks:
    """Peak bytes of a step at any batch: storages of bytes alpha x batch + beta, allocated, moved between
    categories and freed in one order."""

    def __init__(self, order: list[tuple[int, int, str | None, str | None]], alpha: np.ndarray, beta: np.ndarray,
                 block: int):
        self.storage = np.array([s for s, _, _, _ in order], dtype=np.int64)
        self.change = np.array([c for _, c, _, _ in order], dtype=np.int64)
        self.categories = sorted({c for _, _, a, b in order for c in (a, b) if c is not None})
        index = {c: i for i, c in enumerate(self.categories)}
        self.before = np.array([index.get(a, -1) for _, _, a, _ in order], dtype=np.int64)
        self.after = np.array([index.get(b, -1) for _, _, _, b in order], dtype=np.int64)
        self.alpha, self.beta, self.block = alpha, beta, block

    @classmethod
    def fit(cls, steps: dict[int, Events], block: int) -> AffinePeaks | None:
        """The model from two or more traced steps {batch: events}, or None where the order differs between
        them or a storage's bytes do not follow the batch (see coefficients)."""
        if len(steps) < 2:
            return None
        found = {b: normalised(e) for b, e in steps.items()}
        orders = [order for order, _ in found.values()]
        if any(order != orders[0] for order in orders[1:]):
            return None
        fitted = coefficients({b: sizes for b, (_, sizes) in found.items()})
        return None if fitted is None else cls(orders[0], *fitted, block)

    def sizes(self, batch: int) -> np.ndarray:
        """Each event's storage bytes at this batch, rounded up to the allocator's block."""
        return (-(-(self.alpha * batch + self.beta) // self.block) * self.block)[self.storage]

    def peak(self, batch: int) -> int:
        """Peak live bytes at this batch: the highest running sum just after an allocation."""
        running = np.cumsum(self.change * self.sizes(batch))
        return int(running[self.change == 1].max())

    def at_peak(self, batch: int) -> dict[str, int]:
        """Live bytes per category when the peak is first reached at this batch, and the peak ('peak')."""
        sizes, rows = self.sizes(batch), np.arange(len(self.storage))
        change = np.zeros((len(self.storage), len(self.categories) + 1), dtype=np.int64)  # last column: none
        np.add.at(change, (rows, self.after), sizes)
        np.add.at(change, (rows, self.before), -sizes)
        live = np.cumsum(change[:, :-1], axis=0)
        allocations = np.flatnonzero(self.change == 1)
        first = allocations[np.argmax(live[allocations].sum(axis=1))]
        return {"peak": int(live[first].sum()), **{c: int(live[first, i]) for i, c in enumerate(self.categories)}}
