"""Meta fast paths: the output of an op whose shape is plain, made without running PyTorch's Python meta
kernels (decompositions and references), which dominate tracing time. Each returns None for any op it does not
know, and the op then runs as usual."""
from __future__ import annotations

from typing import Any, Callable

import torch

from cnncost.formulas import ACTIVATIONS
from cnncost.trace.ops import op_name

SAME_SHAPE = frozenset("""relu silu sigmoid gelu hardswish hardsigmoid tanh hardtanh leaky_relu elu mish softplus neg
exp sqrt rsqrt abs reciprocal""".split())
ARITHMETIC = frozenset("add sub mul div".split())
BATCH_NORMS = frozenset(["native_batch_norm", "_native_batch_norm_legit_no_training"])
# An optimizer's elementwise updates.
UPDATES = frozenset("add sub mul div lerp addcmul addcdiv sqrt".split())
# Backward ops whose output is shaped like their first argument (dY), kernels that run in Python on meta.
GRADIENTS_LIKE = frozenset("""threshold_backward silu_backward sigmoid_backward tanh_backward hardswish_backward
hardsigmoid_backward gelu_backward hardtanh_backward elu_backward leaky_relu_backward mish_backward""".split())


def shortcut(func, args: tuple, kwargs: dict | None):
    """On the meta device, the output of an op whose shape is plain (in-place ops, activations, batch norm,
    elementwise arithmetic on equal layouts, matrix products, layer norm, softmax) without running PyTorch's
    Python meta kernels, which dominate tracing time; None for every other op."""
    x = args[0] if args else None
    if kwargs or not isinstance(x, torch.Tensor) or not x.is_meta:
        return None
    packet, name = func._overloadpacket.__name__, op_name(func)
    if name in SAME_SHAPE or name in ARITHMETIC:
        if packet != name:  # in place: the output is the input
            return x
        if name in ARITHMETIC:
            return empty_like(x) if same_layout(x, args[1]) else None
        return empty_like(x) if x.is_floating_point() or name in ACTIVATIONS else None
    if packet in BATCH_NORMS:
        return empty_like(x), *batch_norm_stats(packet, x)
    if packet in FRESH:
        return FRESH[packet](*args) if same_dtype(args) else None
    plain = PLAIN_SHAPES.get(packet)
    return plain(*args) if plain and same_dtype(args) and x.is_contiguous() else None


def empty_like(x: torch.Tensor) -> torch.Tensor:
    """torch.empty_like(x) on meta: new_empty for a contiguous x (empty_like runs a Python reference there, a
    fifth of a traced training step's time), empty_like itself (strides kept) otherwise."""
    return x.new_empty(x.shape) if x.is_contiguous() else torch.empty_like(x)


def same_layout(x: torch.Tensor, other: Any) -> bool:
    """x op other has x's shape, dtype and strides: x is floating and other a real number or laid out like x."""
    if not x.is_floating_point():
        return False
    if isinstance(other, torch.Tensor):
        return other.shape == x.shape and other.dtype == x.dtype and other.stride() == x.stride()
    return isinstance(other, (int, float))


def same_dtype(args: tuple) -> bool:
    """Every (non-bool) tensor argument has the first one's dtype."""
    ts = [a for a in args if isinstance(a, torch.Tensor) and a.dtype != torch.bool]
    return all(t.dtype == ts[0].dtype for t in ts)


def layer_norm_outputs(x, normalized_shape, *_):
    """native_layer_norm: the output, and mean and rstd of shape (leading dims, 1, ...) in float32 for half inputs."""
    stats = (*x.shape[:x.dim() - len(normalized_shape)], *[1] * len(normalized_shape))
    dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    return x.new_empty(x.shape), x.new_empty(stats, dtype=dtype), x.new_empty(stats, dtype=dtype)


# Matrix products and layer norm: fresh contiguous outputs of the inputs' dtype, whatever their strides.
FRESH: dict[str, Callable] = {
    "native_layer_norm": layer_norm_outputs,
    "mm": lambda a, b: a.new_empty((a.shape[0], b.shape[1])),
    "addmm": lambda c, a, b, *_: a.new_empty((a.shape[0], b.shape[1])),
    "bmm": lambda a, b: a.new_empty((a.shape[0], a.shape[1], b.shape[2])),
}
# Ops whose meta output is contiguous, of the input's dtype, for a contiguous input: packet -> output.
PLAIN_SHAPES: dict[str, Callable] = {
    "_softmax": lambda x, dim, half_to_float: None if half_to_float else x.new_empty(x.shape),
    "_safe_softmax": lambda x, dim, dtype=None: None if dtype not in (None, x.dtype) else x.new_empty(x.shape),
    "masked_fill": lambda x, mask, value: x.new_empty(x.shape),
}


def batch_norm_stats(packet: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """In training, save_mean and save_invstd as the meta kernel makes them: (C,) float32 for half inputs, and
    (0,) only for _native_batch_norm_legit_no_training; the backward of a training step reads them."""
    if packet != "native_batch_norm" or x.dim() < 2:
        return x.new_empty((0,)), x.new_empty((0,))
    dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    return x.new_empty((x.shape[1],), dtype=dtype), x.new_empty((x.shape[1],), dtype=dtype)


def backward_output(func, args: tuple, kwargs: dict | None, optimizing: bool):
    """On meta, the output of an activation's backward or of an optimizer's elementwise update whose tensors all
    have the first one's shape and dtype (in place: that tensor; else a new one like it), without the Python
    kernels these ops run on meta (decompositions; `alpha` and `value` send add and friends to the references);
    None for any other op."""
    x = args[0] if args else None
    name = op_name(func)
    if not isinstance(x, torch.Tensor) or not x.is_meta or name not in (UPDATES if optimizing else GRADIENTS_LIKE):
        return None
    others = [t for t in (*args[1:], *(kwargs or {}).values()) if isinstance(t, torch.Tensor)]
    if any(t.shape != x.shape or t.dtype != x.dtype for t in others):
        return None
    in_place = func._overloadpacket.__name__.endswith("_")
    return x if in_place else x.new_empty(x.shape) if x.is_contiguous() else None  # see empty_like
