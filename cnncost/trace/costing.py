"""What the counters see of one aten op: its output (a meta fast path, or the op run), the layer it is (its
handler's reading, views included), and that layer's cost by its formula; ops with no formula are listed."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch.utils._pytree import tree_leaves

from cnncost.errors import CnnCostError
from cnncost.formulas import Cost, category_of, cost
from cnncost.trace.fastpath import shortcut
from cnncost.trace.ledger import ParamLedger
from cnncost.trace.ops import FREE, VIEWS, Layer, layer_of, op_name
from cnncost.trace.ops.common import first_tensor, shape


def run_op(func, args: tuple, kwargs: dict | None) -> Any:
    """An op's output: made directly where its shape is plain on meta (fastpath), else by running it."""
    out = shortcut(func, args, kwargs)
    return func(*args, **(kwargs or {})) if out is None else out


def layer_seen(func, args: tuple, kwargs: dict | None, out: Any, ledger: ParamLedger) -> tuple[Layer | None, bool]:
    """(the layer an op is, whether it is booked at all): a free op (view, copy, constant) is not booked, except a
    view that is a row (flatten); a view or copy of a parameter is that parameter in the ledger."""
    name = op_name(func)
    if name in FREE:
        ledger.alias(first_tensor(args), out)
        layer = VIEWS[name](args, out) if name in VIEWS else None
        return layer, layer is not None
    return layer_of(func, args, kwargs, out), True


def op_label(func) -> str:
    """How an op is named in rows and notes: aten.conv2d, or F.<name> for a booked torch function."""
    return str(getattr(func, "_overloadpacket", f"F.{getattr(func, '__name__', func)}"))


def touches_empty(args: tuple, out: Any) -> bool:
    """Whether an op reads or writes a tensor with no elements (no detections kept, an empty batch of boxes)."""
    return any(isinstance(t, torch.Tensor) and t.numel() == 0 for t in tree_leaves((args, out)))


class Costs:
    """Costs of layers by their formulas, remembered per layer (a model repeats its layers), and the ops that had
    none, listed by op (never silently zero)."""

    def __init__(self):
        self.memo: dict[tuple, Cost | None] = {}
        self.unsupported: dict[str, int] = {}

    def formula(self, layer: Layer | None) -> Cost | None:
        """The formula's cost of a layer, or None when the op has no formula (for these arguments)."""
        if layer is None:
            return None
        try:
            key = (layer.kind, layer.in_shape, tuple(sorted(layer.hyper.items())))
            hash(key)
        except TypeError:  # a list among the hyper-parameters (concat's shapes)
            return self.compute(layer)
        if key not in self.memo:
            self.memo[key] = self.compute(layer)
        return self.memo[key]

    @staticmethod
    def compute(layer: Layer) -> Cost | None:
        """formulas.cost of a layer; None where its arguments have no formula."""
        try:
            return cost(layer.kind, layer.in_shape, **layer.hyper)
        except CnnCostError:
            return None

    def of_op(self, layer: Layer | None, label: str, args: tuple, out: Any) -> Cost:
        """The cost of one op: its formula's; nothing for a known op on empty tensors; else a zero row of the
        op's own name, and the op listed as unsupported."""
        c = self.formula(layer)
        if c is not None:
            return c
        in_shape, out_shape = shape(first_tensor(args)), shape(first_tensor(out))
        if layer is not None and touches_empty(args, out):
            return Cost(layer.kind, in_shape, out_shape, category=category_of(layer.kind))
        self.unsupported[label] = self.unsupported.get(label, 0) + 1
        return Cost(label, in_shape, out_shape, category="other")


@contextlib.contextmanager
def tracking(mode, *trackers) -> Iterator:
    """Enter the trackers (module stack, function mode) and then the dispatch mode; leave them in reverse order."""
    with contextlib.ExitStack() as stack:
        for tracker in trackers:
            stack.enter_context(tracker)
        yield stack.enter_context(mode)


class OpSequence:
    """The aten ops a counter saw, in order, each with the row it went to, so that a profiler's events of the same
    run can be joined to the rows (cnncost profile). An op with no row of its own (a view, a copy, an op inside a
    function booked whole) goes with the next row booked: its time is its layer's."""

    def __init__(self):
        self.ops: list[list] = []  # [aten name as the profiler names it ('aten::convolution'), row or None]
        self.pending: list[int] = []

    def seen(self, func) -> None:
        """An op the dispatch mode saw (its row, if any, is told next by `booked`)."""
        self.pending.append(len(self.ops))
        self.ops.append([func._schema.name, None])

    def booked(self, row: dict) -> None:
        """A row booked: the ops seen since the last row are its."""
        for i in self.pending:
            self.ops[i][1] = row
        self.pending.clear()
