"""The aten-op registry: each op family registers a handler by decorator, as torch.utils.flop_counter does.

A handler reads one aten op's (schema-complete, positional) arguments and its output and returns the layer it
is, ``(kind, input shape, hyper-parameters)`` for :func:`cnncost.formulas.cost`, or None when these arguments
have no formula. The arithmetic stays in ``formulas``; handlers only read shapes and hyper-parameters.
Ops that compute nothing are registered too: ``FREE`` views (no row at all) and data movement (a row with bytes,
no MACs). Anything else is "unsupported".
"""
from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any, Callable

import torch
from torch.utils._pytree import tree_leaves

import cnncost.compat  # noqa: F401  (backports for older torch releases)

Layer = tuple[str, tuple, dict]  # (kind, input shape, hyper-parameters) for formulas.cost
Handler = Callable[[tuple, Any], "Layer | None"]

OPS: dict[str, Handler] = {}

# Ops that do no arithmetic and move nothing worth a row. A view of a parameter stays that parameter.
FREE = frozenset("""
view _unsafe_view reshape _reshape_alias t transpose permute expand expand_as unsqueeze squeeze detach alias
slice select split split_with_sizes unsafe_split unsafe_split_with_sizes chunk unsafe_chunk unbind as_strided
narrow unfold diagonal view_as_real view_as_complex
empty empty_like new_empty empty_strided zeros zeros_like ones ones_like full full_like new_full new_zeros
new_ones fill zero resize arange linspace logspace eye scalar_tensor
rand randn randint rand_like randn_like randint_like normal uniform bernoulli
hann_window hamming_window blackman_window bartlett_window kaiser_window
clone _to_copy copy contiguous lift_fresh lift_fresh_copy dropout sym_size _local_scalar_dense
_record_function_enter _record_function_enter_new _record_function_exit _cuda_version
""".split())  # views; tensors made from nothing (constants, ranges, random, windows); copies; markers


def handles(*names: str) -> Callable[[Handler], Handler]:
    """Register a handler for one or more aten ops (base names, in-place suffix dropped); twice is an error."""
    def register(fn: Handler) -> Handler:
        for name in names:
            if name in OPS or name in FREE:
                raise ValueError(f"aten op {name!r} is registered twice")
            OPS[name] = fn
        return fn
    return register


# Torch functions costed as ONE layer whatever aten ops they run as (F.local_response_norm runs as mul, pad,
# avg_pool3d, pow, div; F.instance_norm as batch norm on a view), so that their row is the same on every device:
# function -> handler(bound arguments by name, output) -> Layer | None. The tracer books the layer and none of the
# aten ops inside the call.
FUNCTIONS: dict[Callable, Callable[[dict, Any], "Layer | None"]] = {}


def handles_function(*funcs: Callable) -> Callable:
    """Register a handler for one or more torch functions (see FUNCTIONS); twice is an error."""
    def register(fn):
        for func in funcs:
            if func in FUNCTIONS:
                raise ValueError(f"function {func.__name__!r} is registered twice")
            FUNCTIONS[func] = fn
        return fn
    return register


# A builtin torch function has no Python signature (F.scaled_dot_product_attention): a stub's stands in.
SIGNATURES: dict[Callable, Callable] = {}


@lru_cache(maxsize=None)
def signature(func: Callable) -> inspect.Signature:
    """A torch function's Python signature (cached); a builtin's from its stub in SIGNATURES."""
    return inspect.signature(SIGNATURES.get(func, func))


def bound_args(func: Callable, args: tuple, kwargs: dict | None) -> dict[str, Any]:
    """A torch function's arguments by name, defaults filled in."""
    bound = signature(func).bind(*args, **(kwargs or {}))
    bound.apply_defaults()
    return bound.arguments


@lru_cache(maxsize=None)
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


def load_families() -> None:
    """Import every module of op handlers, so that each registers its ops (one per op family)."""
    from cnncost.trace import ops_math, ops_nn  # noqa: F401
    from cnncost.trace import ops_backward  # noqa: F401  (backward ops of a training step)
