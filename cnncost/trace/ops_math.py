"""Aten handlers for matrix products, activations, elementwise ops, reductions, attention and data movement."""
from __future__ import annotations

import torch

from cnncost.trace.ops import Handler, Layer, handles, shape


# -- matrix products ------------------------------------------------------------------------------------------


def matmul(bias: bool, first: int = 0) -> Handler:
    """mm / bmm / addmm: rows x in_features x out_features multiply-adds (addmm adds a bias)."""
    return lambda args, out: ("linear", shape(args[first]), {"out_features": args[first + 1].shape[-1],
                                                              "bias": bias})


handles("addmm")(matmul(True, 1))
handles("mm", "bmm")(matmul(False))


@handles("linear")
def linear(args: tuple, out) -> Layer:
    """aten.linear(x, weight, bias=None), seen on some backends."""
    return "linear", shape(args[0]), {"out_features": args[1].shape[0], "bias": args[2] is not None}


# -- activations ----------------------------------------------------------------------------------------------


def activation(kind: str) -> Handler:
    """A one-input activation."""
    return lambda args, out: (kind, shape(args[0]), {})


for _kind in ("relu", "silu", "sigmoid", "gelu", "hardswish", "hardsigmoid", "tanh"):
    handles(_kind)(activation(_kind))


@handles("hardtanh")
def hardtanh(args: tuple, out) -> Layer | None:
    """hardtanh(x, 0, 6) is ReLU6; other bounds have no formula."""
    bounds = tuple(float(v) for v in args[1:3])
    return ("relu6", shape(args[0]), {}) if bounds == (0.0, 6.0) else None


# -- elementwise and data movement -----------------------------------------------------------------------------


def binary(kind: str) -> Handler:
    """An elementwise op of two operands (tensor or number), broadcast."""
    return lambda args, out: (kind, shape(args[0]), {"other": shape(args[1])})


handles("add")(binary("add"))
handles("mul")(binary("mul"))


@handles("cat")
def cat(args: tuple, out) -> Layer:
    """cat(tensors, dim=0)."""
    tensors, dim = args[0], args[1]
    first = shape(tensors[0])
    return "concat", first, {"others": [shape(t) for t in tensors[1:]], "dim": dim % len(first)}


def view(args: tuple, out: torch.Tensor) -> Layer | None:
    """A view from N x ... to N x rest is a flatten; any other view is free and not a row."""
    x = args[0]
    if x.dim() > 2 and out.dim() == 2 and out.shape[0] == x.shape[0]:
        return "flatten", shape(x), {}
    return None


VIEWS: dict[str, Handler] = {"view": view, "_unsafe_view": view, "reshape": view}
