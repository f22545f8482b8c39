"""The aten-op registry: each op family registers a handler by decorator, as torch.utils.flop_counter does.

A handler reads one aten op's (schema-complete, positional) arguments and its output and returns the `Layer` it
is, for :func:`cnncost.formulas.cost`, or None when these arguments have no formula. The arithmetic stays in
``formulas``; handlers only read shapes and hyper-parameters. Ops that compute nothing are registered too:
``FREE`` views (no row at all) and data movement (a row with bytes, no MACs). Anything else is "unsupported".
"""
from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any, Callable, NamedTuple

import torch

import cnncost.compat  # noqa: F401  (backports for older torch releases)
from cnncost.registry import Registry


class Layer(NamedTuple):
    """What one op is, for formulas.cost: its layer kind, input shape and hyper-parameters."""

    kind: str
    in_shape: tuple
    hyper: dict


Handler = Callable[[tuple, Any], "Layer | None"]

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
_assert_async _assert_scalar _assert_tensor_metadata _functional_assert_async _functional_assert_scalar
sym_constrain_range sym_constrain_range_for_size _functional_sym_constrain_range
_functional_sym_constrain_range_for_size _print
""".split())  # views; tensors made from nothing (constants, ranges, random, windows); copies; markers; checks

OPS: Registry[Handler] = Registry("aten op", taken=FREE.__contains__)
# Free ops that are still a row in some forms (a view from N x ... to N x rest is a flatten): name -> handler.
VIEWS: Registry[Handler] = Registry("view op")


def handles(*names: str) -> Callable[[Handler], Handler]:
    """Register a handler for one or more aten ops (base names, in-place suffix dropped); twice is an error."""
    return OPS.register(*names)


# Torch functions costed as ONE layer whatever aten ops they run as (F.local_response_norm runs as mul, pad,
# avg_pool3d, pow, div; F.instance_norm as batch norm on a view), so that their row is the same on every device:
# function -> handler(bound arguments by name, output) -> Layer | None. The tracer books the layer and none of the
# aten ops inside the call.
FUNCTIONS: Registry[Callable[[dict, Any], "Layer | None"]] = Registry("torch function")


def handles_function(*funcs: Callable) -> Callable:
    """Register a handler for one or more torch functions (see FUNCTIONS); twice is an error."""
    return FUNCTIONS.register(*funcs)


def function_as_op(func: Callable, aten: str, like: Callable | None = None) -> None:
    """Book a torch function as one layer read by an aten op's handler: the function's arguments are passed in
    the op's schema order, by name (the schema's `self` is the function's `input`). A function with no Python
    signature (a builtin, or a wrapper taking *args) is read by `like`'s signature, or else the op's schema's."""
    FUNCTIONS.add([func], by_schema(aten))
    if like is not None:
        SIGNATURES[func] = inspect.signature(like)
    elif not has_signature(func):
        SIGNATURES[func] = schema_signature(aten)


def has_signature(func: Callable) -> bool:
    """Whether a function has a Python signature of named parameters (builtins and *args wrappers have none)."""
    try:
        parameters = inspect.signature(func).parameters.values()
    except (ValueError, TypeError):
        return False
    return not any(p.kind == p.VAR_POSITIONAL for p in parameters)


@lru_cache(maxsize=None)
def schema_signature(aten: str) -> inspect.Signature:
    """A Python signature from an aten op's schema: its arguments by name (`self` as `input`), with defaults."""
    params = []
    for a in getattr(torch.ops.aten, aten).default._schema.arguments:
        default = a.default_value if a.has_default_value() else inspect.Parameter.empty
        params.append(inspect.Parameter("input" if a.name == "self" else a.name,
                                        inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default))
    return inspect.Signature(params)


def by_schema(aten: str) -> Callable[[dict, Any], "Layer | None"]:
    """A function-level handler that calls the aten op's registered handler with the arguments by schema name."""
    names = [a.name for a in getattr(torch.ops.aten, aten).default._schema.arguments]

    def handler(bound: dict, out) -> Layer | None:
        args = tuple(bound.get(name, bound.get("input") if name == "self" else None) for name in names)
        return OPS[aten](args, out)
    return handler


# A builtin torch function has no Python signature (F.scaled_dot_product_attention): one given here stands in.
SIGNATURES: dict[Callable, inspect.Signature] = {}


@lru_cache(maxsize=None)
def signature(func: Callable) -> inspect.Signature:
    """A torch function's Python signature (cached); a builtin's from SIGNATURES."""
    return SIGNATURES[func] if func in SIGNATURES else inspect.signature(func)


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


def forward_layer(op: str, args: tuple) -> Layer | None:
    """The layer a forward aten op would be with these arguments (a backward op reads its forward's arguments)."""
    return OPS[op](args, None)
