"""The function-level mode: a torch function with a registered handler (ops.FUNCTIONS) is booked as one layer and
the aten ops it runs as are muted, so that its row is the same on every device; calls of the functions other
counters patch by name (ORIGINS) are named, so their ops get a row of their own."""
from __future__ import annotations

import dis
import sys
from typing import Callable

import torch
from torch.overrides import TorchFunctionMode

from cnncost.trace.ops import FUNCTIONS, bound_args

# Torch functions that other counters patch by name (ptflops: torch.matmul/mm/bmm/addmm/baddbmm and
# Tensor.matmul/mm/bmm/addmm): the ops of a call of one get a row of their own whose op column names it, so that
# verify tells x.matmul(y), which ptflops counts, from F.linear and x @ y (not called by name), which run as the
# same aten ops.
ORIGINS = {getattr(owner, fn): f"{label}.{fn}" for owner, label in ((torch, "torch"), (torch.Tensor, "Tensor"))
           for fn in ("matmul", "mm", "bmm", "addmm", "baddbmm") if hasattr(owner, fn)}


def by_operator() -> bool:
    """Whether the tensor method being dispatched was reached by an operator (x @ y runs as Tensor.matmul
    too), not called by name: CPython's caller frame (above __torch_function__) stands at a BINARY_OP."""
    try:
        frame = sys._getframe(2)
        return dis.opname[frame.f_code.co_code[frame.f_lasti]] in ("BINARY_OP", "BINARY_MATRIX_MULTIPLY")
    except (ValueError, IndexError):  # no such frame, or no instruction there: taken as a call by name
        return False


class FunctionMode(TorchFunctionMode):
    """Books registered torch functions whole through book(layer, (args, kwargs), out, func); `muted` while one
    runs (the dispatch mode then books nothing), `origin` while an ORIGINS function runs."""

    def __init__(self, book: Callable):
        super().__init__()
        self.book = book
        self.muted = False
        self.origin = ""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        handler = FUNCTIONS.get(func)
        if handler is None or self.muted:
            origin = ORIGINS.get(func)
            if origin is None or self.origin or (func is torch.Tensor.matmul and by_operator()):
                return func(*args, **(kwargs or {}))
            self.origin = origin  # the ops inside are booked in a row naming it
            try:
                return func(*args, **(kwargs or {}))
            finally:
                self.origin = ""
        self.muted = True
        try:
            out = func(*args, **(kwargs or {}))
        finally:
            self.muted = False
        self.book(handler(bound_args(func, args, kwargs), out), (args, kwargs), out, func)
        return out
