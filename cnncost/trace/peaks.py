"""A training step's peak memory at any batch, replayed from the storages of three traced steps.

On the meta device a step allocates and frees the same storages in the same order at every batch; only their
sizes change, and each size is affine in the batch (batch x bytes per image + bytes that do not grow: weights,
per-channel statistics). Three traced steps show both: the order of every allocation and free, and each
storage's two coefficients (fitted on two batches, checked exactly on the third). The peak at another batch is
then a running sum over that order with the sizes at that batch, rounded to the allocator's block: a millisecond
instead of a traced step. Where the order or a size does not follow (a model that branches on the batch), there
is no model and the caller traces.
"""
from __future__ import annotations

import numpy as np

Events = list[tuple[int, int]]  # (storage key, bytes) when a storage appears, (key, -1) when it is freed


def normalised(events: Events) -> tuple[list[tuple[int, bool]], list[int]]:
    """The events with storages numbered by first appearance (keys are addresses, reused once freed): the order
    as (storage number, allocated?) and each storage's bytes."""
    numbers: dict[int, int] = {}
    order, sizes = [], []
    for key, nbytes in events:
        if nbytes >= 0:
            numbers[key] = len(sizes)
            sizes.append(nbytes)
            order.append((numbers[key], True))
        else:
            order.append((numbers.pop(key), False))
    return order, sizes


class AffinePeaks:
    """Peak bytes of a step at any batch: storages of bytes alpha x batch + beta, allocated and freed in one order."""

    def __init__(self, order: list[tuple[int, bool]], alpha: np.ndarray, beta: np.ndarray, block: int):
        self.storage = np.array([s for s, _ in order], dtype=np.int64)
        self.allocated = np.array([a for _, a in order], dtype=bool)
        self.alpha, self.beta, self.block = alpha, beta, block

    @classmethod
    def fit(cls, steps: dict[int, Events], block: int) -> AffinePeaks | None:
        """The model from three or more traced steps {batch: events}, or None where the order differs between
        them or a storage's bytes are not affine in the batch."""
        if len(steps) < 3:
            return None
        (low, first), *middle, (high, last) = sorted((b, normalised(e)) for b, e in steps.items())
        if any(order != first[0] for _, (order, _) in [*middle, (high, last)]):
            return None
        small, large = np.array(first[1], dtype=np.int64), np.array(last[1], dtype=np.int64)
        growth = large - small
        if (growth % (high - low)).any():
            return None
        alpha = growth // (high - low)
        beta = small - alpha * low
        if any((alpha * b + beta != np.array(sizes, dtype=np.int64)).any() for b, (_, sizes) in middle):
            return None
        return cls(first[0], alpha, beta, block)

    def peak(self, batch: int) -> int:
        """Peak live bytes at this batch: the highest running sum just after an allocation."""
        sizes = -(-(self.alpha * batch + self.beta) // self.block) * self.block
        change = np.where(self.allocated, sizes[self.storage], -sizes[self.storage])
        return int(np.cumsum(change)[self.allocated].max())
