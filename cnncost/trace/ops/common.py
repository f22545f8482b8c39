"""Argument readers shared by every op family: shapes, window arguments, tensors among arguments, and the
handler shapes that several families use (one-input and two-input elementwise ops)."""
from __future__ import annotations

from typing import Any

import torch
from torch.utils._pytree import tree_leaves

from cnncost.trace.ops.registry import Handler, Layer

RANKS = (1, 2, 3)
GRID_MODES = ("bilinear", "nearest", "bicubic")  # grid_sampler's interpolation_mode 0, 1, 2


def shape(t: Any) -> tuple[int, ...]:
    """A tensor's shape; a Python number or 0-d tensor as (1,)."""
    return tuple(t.shape) or (1,) if isinstance(t, torch.Tensor) else (1,)


def ints(value: Any) -> int | tuple[int, ...]:
    """A kernel/stride/padding argument as an int or a tuple."""
    value = [value] if isinstance(value, int) else list(value)
    return value[0] if len(value) == 1 else tuple(value)


def first_tensor(out: Any) -> torch.Tensor | None:
    """The first tensor of an op's output (max_pool2d_with_indices and batch norm return tuples)."""
    if isinstance(out, torch.Tensor):
        return out
    return next(iter_tensors(out), None)


def iter_tensors(args: Any):
    """The tensors among an op's arguments, in order: tuples and lists looked into (an op's arguments hold no
    other containers), anything else through pytree."""
    if isinstance(args, torch.Tensor):
        yield args
    elif isinstance(args, (tuple, list)):
        for a in args:
            if isinstance(a, torch.Tensor):
                yield a
            elif isinstance(a, (tuple, list, dict)):
                yield from iter_tensors(a)
    elif isinstance(args, dict):
        yield from (t for t in tree_leaves(args) if isinstance(t, torch.Tensor))


def tensors(args: Any) -> list[torch.Tensor]:
    """Every tensor among an op's arguments (lists of tensors included)."""
    return list(iter_tensors(args))


def numel(args: Any) -> int:
    """Elements of every tensor among an op's arguments."""
    return sum(t.numel() for t in tensors(args))


def unary(kind: str) -> Handler:
    """A one-input elementwise op; its number arguments (clamp's bounds, cumsum's dim) cost nothing more."""
    return lambda args, out: Layer(kind, shape(args[0]), {})


def binary(kind: str) -> Handler:
    """An elementwise op of two operands (tensor or number), broadcast."""
    return lambda args, out: Layer(kind, shape(args[0]), {"other": shape(args[1])})


def moved(args: tuple, out) -> Layer:
    """An op that reads its tensor inputs in full and writes its output (pad, roll, flip, repeat, stack, ...)."""
    inputs, outputs = tensors(args), tensors(out)
    return Layer("data_movement", shape(inputs[0]), {"out_shape": tuple(outputs[0].shape) if outputs else (0,),
                                                     "read": sum(t.numel() for t in inputs)})
