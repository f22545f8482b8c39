"""The aten-op registry: each op family registers a handler by decorator, as torch.utils.flop_counter does.

A handler reads one aten op's (schema-complete, positional) arguments and its output and returns the layer it
is, ``(kind, input shape, hyper-parameters)`` for :func:`cnncost.formulas.cost`, or None when these arguments
have no formula. The arithmetic stays in ``formulas``; handlers only read shapes and hyper-parameters.
Ops that compute nothing are registered too: ``FREE`` views (no row at all) and data movement (a row with bytes,
no MACs). Anything else is "unsupported".
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

import torch
from torch.utils._pytree import tree_leaves

Layer = tuple[str, tuple, dict]  # (kind, input shape, hyper-parameters) for formulas.cost
Handler = Callable[[tuple, Any], "Layer | None"]

OPS: dict[str, Handler] = {}

# Ops that do no arithmetic and move nothing worth a row: views, allocations and copies. A view of a parameter
# stays that parameter.
FREE = frozenset("""view _unsafe_view reshape _reshape_alias t transpose permute expand expand_as unsqueeze
squeeze detach alias empty empty_like new_empty empty_strided zeros zeros_like ones ones_like full full_like
new_zeros new_ones fill zero slice select split split_with_sizes chunk unbind as_strided narrow unfold clone
_to_copy copy contiguous lift_fresh lift_fresh_copy arange scalar_tensor dropout sym_size
_local_scalar_dense""".split())


def handles(*names: str) -> Callable[[Handler], Handler]:
    """Register a handler for one or more aten ops (base names, in-place suffix dropped); twice is an error."""
    def register(fn: Handler) -> Handler:
        for name in names:
            if name in OPS or name in FREE:
                raise ValueError(f"aten op {name!r} is registered twice")
            OPS[name] = fn
        return fn
    return register


def op_name(func) -> str:
    """The aten op's base name, in-place suffix dropped: aten.relu_.default -> relu."""
    name = func._overloadpacket.__name__
    return name[:-1] if name.endswith("_") and not name.endswith("__") else name


@lru_cache(maxsize=None)
def schema_tail(func) -> tuple[tuple[str, Any], ...]:
    """(name, default) of each positional-or-keyword argument of an op's schema, for completing a call."""
    return tuple((a.name, a.default_value if a.has_default_value() else None) for a in func._schema.arguments)


def full_args(func, args: tuple, kwargs: dict | None) -> tuple:
    """An op's arguments as one positional tuple: keywords and defaults filled in from its schema."""
    tail = schema_tail(func)
    if len(args) >= len(tail) and not kwargs:
        return args
    kwargs = kwargs or {}
    return (*args, *(kwargs.get(name, default) for name, default in tail[len(args):]))


def layer_of(func, args: tuple, kwargs: dict | None, out: Any) -> Layer | None:
    """The layer an op is, by its registered handler; None for an op with no handler (or no formula here)."""
    handler = OPS.get(op_name(func))
    return handler(full_args(func, args, kwargs), out) if handler else None


# -- shape helpers for handlers --------------------------------------------------------------------------------


def shape(t: Any) -> tuple[int, ...]:
    """A tensor's shape; a Python number or 0-d tensor as (1,)."""
    return tuple(t.shape) or (1,) if isinstance(t, torch.Tensor) else (1,)


def ints(value: Any) -> int | tuple[int, ...]:
    """A kernel/stride/padding argument as an int or a tuple."""
    value = [value] if isinstance(value, int) else list(value)
    return value[0] if len(value) == 1 else tuple(value)


def first_tensor(out: Any) -> torch.Tensor | None:
    """The first tensor of an op's output (max_pool2d_with_indices and batch norm return tuples)."""
    return next((t for t in tree_leaves(out) if isinstance(t, torch.Tensor)), None)


# -- convolution and matrix products ---------------------------------------------------------------------------


@handles("convolution", "_convolution")
def conv(args: tuple, out) -> Layer | None:
    """aten.convolution(x, w, b, stride, padding, dilation, transposed, output_padding, groups): 2-d only."""
    x, w, b, stride, padding, dilation, transposed, _, groups = args[:9]
    if transposed or x.dim() != 4:
        return None
    return "conv2d", shape(x), dict(out_channels=w.shape[0], kernel=tuple(w.shape[2:]), stride=ints(stride),
                                    padding=ints(padding), dilation=ints(dilation), groups=groups,
                                    bias=b is not None)


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


# -- normalization, activations, pooling -----------------------------------------------------------------------


@handles("native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training", "batch_norm",
         "cudnn_batch_norm", "miopen_batch_norm")
def batch_norm(args: tuple, out) -> Layer:
    """Any batch norm variant (x, weight, bias, running_mean, running_var, ...)."""
    return "batchnorm2d", shape(args[0]), {"affine": args[1] is not None}


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


@handles("max_pool2d", "max_pool2d_with_indices")
def max_pool(args: tuple, out) -> Layer:
    """max_pool2d(x, kernel, stride=[], padding=0, dilation=1, ceil_mode=False)."""
    x, kernel, stride, padding, dilation, ceil_mode = args[:6]
    return "maxpool2d", shape(x), dict(kernel=ints(kernel), stride=ints(stride) if stride else None,
                                       padding=ints(padding), dilation=ints(dilation), ceil_mode=bool(ceil_mode))


@handles("avg_pool2d")
def avg_pool(args: tuple, out) -> Layer:
    """avg_pool2d(x, kernel, stride=[], padding=0, ceil_mode=False, ...)."""
    x, kernel, stride, padding, ceil_mode = args[:5]
    return "avgpool2d", shape(x), dict(kernel=ints(kernel), stride=ints(stride) if stride else None,
                                       padding=ints(padding), ceil_mode=bool(ceil_mode))


@handles("_adaptive_avg_pool2d", "adaptive_avg_pool2d")
def adaptive_avg_pool(args: tuple, out) -> Layer:
    """adaptive_avg_pool2d(x, output_size)."""
    return "adaptive_avgpool2d", shape(args[0]), {"output_size": ints(args[1])}


@handles("mean")
def mean(args: tuple, out) -> Layer | None:
    """mean over H and W of an NCHW tensor is a global average pool (how adaptive_avg_pool2d(1) runs)."""
    x, dims = args[0], args[1] if len(args) > 1 else None
    if x.dim() == 4 and dims is not None and sorted(d % 4 for d in dims) == [2, 3]:
        return "adaptive_avgpool2d", shape(x), {"output_size": 1}
    return None


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
