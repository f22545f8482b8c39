"""Closed-form per-layer costs from shapes and hyper-parameters. Pure Python: no torch.

Conventions (see README): one MAC is one multiply-accumulate, FLOPs = 2 x MACs.
Conv and linear MACs exclude the bias, whose additions are counted in ``bias_adds``.
Non-core layers (norm, activation, pool, elementwise) count one op per element
touched, booked as MACs in their own category so that every other tool's total can
be rebuilt from categories. Shapes are NCHW tuples; output sizes follow PyTorch's
floor (or ceil_mode) rules.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from cnncost.errors import CnnCostError

CATEGORIES = ("conv", "linear", "norm", "activation", "pool", "elementwise", "other")
CORE = ("conv", "linear")
DTYPE_BYTES = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "fp64": 8, "int8": 1}
ACTIVATIONS = ("relu", "relu6", "silu", "sigmoid", "gelu", "hardswish", "hardsigmoid", "tanh")

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Cost:
    """What one layer costs: work, weights and the elements it reads and writes."""

    kind: str
    category: str
    in_shape: Shape
    out_shape: Shape
    macs: int = 0
    bias_adds: int = 0
    params: int = 0
    buffers: int = 0
    input_elements: int = 0
    kernel: str = ""
    stride: str = ""
    groups: int = 1
    parts: tuple[tuple[str, "Cost"], ...] = ()

    @property
    def activations(self) -> int:
        """Output elements: activations = prod(out_shape)."""
        return math.prod(self.out_shape)

    @property
    def flops(self) -> int:
        """FLOPs = 2 x MACs."""
        return 2 * self.macs

    def bytes_read(self, dtype: str = "fp32") -> int:
        """bytes read = (input elements + parameters) x bytes per element."""
        return (self.input_elements + self.params) * dtype_bytes(dtype)

    def bytes_written(self, dtype: str = "fp32") -> int:
        """bytes written = output elements x bytes per element."""
        return self.activations * dtype_bytes(dtype)

    def intensity(self, dtype: str = "fp32") -> float:
        """arithmetic intensity = 2 x MACs / (bytes read + bytes written), in FLOP/byte."""
        moved = self.bytes_read(dtype) + self.bytes_written(dtype)
        return self.flops / moved if moved else 0.0


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of a dtype name (fp32, fp16, bf16, ...)."""
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise CnnCostError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPE_BYTES)}") from None


FORMULAS: dict[str, Callable[..., Cost]] = {}


def formula(*kinds: str) -> Callable:
    """Register a formula under one or more layer kinds; registering a kind twice is an error."""

    def register(fn: Callable[..., Cost]) -> Callable[..., Cost]:
        for kind in kinds:
            if kind in FORMULAS:
                raise ValueError(f"layer kind {kind!r} is registered twice")
            FORMULAS[kind] = fn
        return fn

    return register


def cost(kind: str, in_shape: Sequence[int], **hyper) -> Cost:
    """Cost of one layer of a registered kind, e.g. cost('conv2d', (1, 3, 224, 224), out_channels=64, kernel=7)."""
    if kind not in FORMULAS:
        raise CnnCostError(f"no formula for layer kind {kind!r}; known kinds: {', '.join(sorted(FORMULAS))}")
    if kind in ACTIVATIONS:
        hyper["kind"] = kind
    return FORMULAS[kind](check_shape(in_shape), **hyper)


# -- shape helpers ---------------------------------------------------------------------


def pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    """An int or an (h, w) pair as an (h, w) pair."""
    if isinstance(value, int):
        return value, value
    if len(value) != 2:
        raise CnnCostError(f"{what} must be one number or two, got {value!r}")
    return int(value[0]), int(value[1])


def check_shape(shape: Sequence[int]) -> Shape:
    """A shape with every size positive."""
    shape = tuple(int(s) for s in shape)
    if not shape or any(s <= 0 for s in shape):
        raise CnnCostError(f"every size must be positive, got shape {fmt_shape(shape)}")
    return shape


def fmt_shape(shape: Sequence[int]) -> str:
    """A shape as 1x64x56x56."""
    return "x".join(str(s) for s in shape)


def window_out(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool = False) -> int:
    """out = floor((size + 2 padding - dilation (kernel - 1) - 1) / stride) + 1 (ceil with ceil_mode)."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if span < 0:
        raise CnnCostError(
            f"kernel {kernel} (dilation {dilation}) is larger than the padded input {size + 2 * padding}"
        )
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    return out - 1 if (out - 1) * stride >= size + padding else out


def window_outs(shape: Shape, kernel, stride, padding, dilation, ceil_mode=False) -> tuple[int, int]:
    """Output (H, W) of a sliding window over the last two dims of an NCHW shape."""
    if len(shape) != 4:
        raise CnnCostError(f"expected an NCHW input, got shape {fmt_shape(shape)}")
    k, s, p, d = pair(kernel, "kernel"), pair(stride, "stride"), pair(padding, "padding"), pair(dilation, "dilation")
    for name, value in (("kernel", k), ("stride", s), ("dilation", d)):
        if min(value) <= 0:
            raise CnnCostError(f"{name} must be positive, got {value}")
    if min(p) < 0:
        raise CnnCostError(f"padding must not be negative, got {p}")
    return tuple(window_out(shape[2 + i], k[i], s[i], p[i], d[i], ceil_mode) for i in range(2))


def fmt_pair(value) -> str:
    """(3, 3) as '3x3', 3 as '3x3'."""
    return fmt_shape(pair(value, "value"))


# -- conv and linear -------------------------------------------------------------------


@formula("conv2d")
def conv2d(in_shape: Shape, out_channels: int, kernel=1, stride=1, padding=0, dilation=1, groups: int = 1,
           bias: bool = False) -> Cost:
    """MACs = N x C_out x H_out x W_out x (C_in / groups) x k_h x k_w; depthwise is groups = C_in."""
    n, c_in = in_shape[0], in_shape[1]
    if out_channels <= 0 or groups <= 0:
        raise CnnCostError(f"out channels and groups must be positive, got {out_channels} and {groups}")
    if c_in % groups or out_channels % groups:
        raise CnnCostError(f"groups={groups} must divide both input channels {c_in} and output channels {out_channels}")
    h_out, w_out = window_outs(in_shape, kernel, stride, padding, dilation)
    kh, kw = pair(kernel, "kernel")
    out_shape = (n, out_channels, h_out, w_out)
    weights = out_channels * (c_in // groups) * kh * kw
    out_elems = math.prod(out_shape)
    return Cost("conv2d", "conv", in_shape, out_shape, macs=out_elems * (c_in // groups) * kh * kw,
                bias_adds=out_elems if bias else 0, params=weights + (out_channels if bias else 0),
                input_elements=math.prod(in_shape), kernel=fmt_pair(kernel), stride=fmt_pair(stride), groups=groups)


@formula("linear")
def linear(in_shape: Shape, out_features: int, bias: bool = True) -> Cost:
    """MACs = (elements / in_features) x in_features x out_features."""
    if out_features <= 0:
        raise CnnCostError(f"out features must be positive, got {out_features}")
    rows, in_features = math.prod(in_shape[:-1]), in_shape[-1]
    out_shape = (*in_shape[:-1], out_features)
    return Cost("linear", "linear", in_shape, out_shape, macs=rows * in_features * out_features,
                bias_adds=rows * out_features if bias else 0,
                params=in_features * out_features + (out_features if bias else 0),
                input_elements=math.prod(in_shape))


# -- per-element layers ----------------------------------------------------------------


def elementwise(kind: str, category: str, in_shape: Shape, **extra) -> Cost:
    """A layer that touches each element once: ops = prod(shape), output shape = input shape."""
    n = math.prod(in_shape)
    return Cost(kind, category, in_shape, in_shape, macs=n, input_elements=n, **extra)


@formula("batchnorm2d")
def batchnorm2d(in_shape: Shape, affine: bool = True) -> Cost:
    """Inference batch norm folds to y = x * scale + shift: 1 MAC per element; params 2C, buffers 2C."""
    c = in_shape[1]
    return elementwise("batchnorm2d", "norm", in_shape, params=2 * c if affine else 0, buffers=2 * c)


@formula(*ACTIVATIONS)
def activation(in_shape: Shape, kind: str = "relu") -> Cost:
    """An activation (ReLU, ReLU6, SiLU, sigmoid, GELU, ...): 1 op per element."""
    return elementwise(kind, "activation", in_shape)


# -- pooling ---------------------------------------------------------------------------


def pool(kind: str, in_shape: Shape, kernel, stride, padding, dilation, ceil_mode) -> Cost:
    """A sliding-window pool: ops = output elements x k_h x k_w."""
    stride = kernel if stride is None else stride
    h_out, w_out = window_outs(in_shape, kernel, stride, padding, dilation, ceil_mode)
    kh, kw = pair(kernel, "kernel")
    out_shape = (*in_shape[:2], h_out, w_out)
    return Cost(kind, "pool", in_shape, out_shape, macs=math.prod(out_shape) * kh * kw,
                input_elements=math.prod(in_shape), kernel=fmt_pair(kernel), stride=fmt_pair(stride))


@formula("maxpool2d")
def maxpool2d(in_shape: Shape, kernel, stride=None, padding=0, dilation=1, ceil_mode: bool = False) -> Cost:
    """Max pool: output elements x k_h x k_w comparisons."""
    return pool("maxpool2d", in_shape, kernel, stride, padding, dilation, ceil_mode)


@formula("avgpool2d")
def avgpool2d(in_shape: Shape, kernel, stride=None, padding=0, ceil_mode: bool = False) -> Cost:
    """Average pool: output elements x k_h x k_w additions."""
    return pool("avgpool2d", in_shape, kernel, stride, padding, 1, ceil_mode)


def adaptive_bins(size: int, out: int) -> int:
    """Total input positions summed by adaptive pooling along one dim: sum of the bins' widths."""
    return sum(math.ceil((i + 1) * size / out) - (i * size) // out for i in range(out))


@formula("adaptive_avgpool2d")
def adaptive_avgpool2d(in_shape: Shape, output_size=1) -> Cost:
    """Adaptive average pool: one add per input element in each output bin (= N C H W for output 1x1)."""
    oh, ow = pair(output_size, "output size")
    n, c, h, w = in_shape
    out_shape = (n, c, oh, ow)
    return Cost("adaptive_avgpool2d", "pool", in_shape, out_shape, macs=n * c * adaptive_bins(h, oh) * adaptive_bins(w, ow),
                input_elements=math.prod(in_shape), kernel=f"->{oh}x{ow}")


# -- multi-input layers ----------------------------------------------------------------


def broadcast(shapes: Sequence[Shape]) -> Shape:
    """PyTorch's broadcast of several shapes."""
    ndim = max(len(s) for s in shapes)
    padded = [(1,) * (ndim - len(s)) + tuple(s) for s in shapes]
    out = []
    for sizes in zip(*padded):
        big = max(sizes)
        if any(s not in (1, big) for s in sizes):
            raise CnnCostError(f"shapes {', '.join(fmt_shape(s) for s in shapes)} do not broadcast")
        out.append(big)
    return tuple(out)


def combine(kind: str, in_shape: Shape, others: Sequence[Shape]) -> Cost:
    """Elementwise op over several inputs: ops = output elements x (inputs - 1)."""
    shapes = [in_shape, *(check_shape(s) for s in others)]
    out_shape = broadcast(shapes)
    return Cost(kind, "elementwise", in_shape, out_shape, macs=math.prod(out_shape) * (len(shapes) - 1),
                input_elements=sum(math.prod(s) for s in shapes))


@formula("add")
def add(in_shape: Shape, other: Shape | None = None, others: Sequence[Shape] = ()) -> Cost:
    """Elementwise add (residual): 1 add per output element per extra input."""
    return combine("add", in_shape, [*([other] if other else [in_shape]), *others])


@formula("mul")
def mul(in_shape: Shape, other: Shape | None = None) -> Cost:
    """Elementwise multiply (SE scaling): 1 multiply per output element."""
    return combine("mul", in_shape, [other or in_shape])


@formula("concat")
def concat(in_shape: Shape, others: Sequence[Shape] = (), dim: int = 1) -> Cost:
    """Concatenation: no arithmetic; reads every input and writes their sum along dim."""
    shapes = [in_shape, *(check_shape(s) for s in others)]
    rest = {s[:dim] + s[dim + 1:] for s in shapes}
    if len(rest) != 1:
        raise CnnCostError(f"cannot concatenate shapes {', '.join(fmt_shape(s) for s in shapes)} along dim {dim}")
    out_shape = in_shape[:dim] + (sum(s[dim] for s in shapes),) + in_shape[dim + 1:]
    return Cost("concat", "other", in_shape, out_shape, input_elements=sum(math.prod(s) for s in shapes))


@formula("flatten")
def flatten(in_shape: Shape) -> Cost:
    """Flatten to (N, rest): a view, no arithmetic and no traffic."""
    return Cost("flatten", "other", in_shape, (in_shape[0], math.prod(in_shape[1:])))


@formula("dropout")
def dropout(in_shape: Shape) -> Cost:
    """Dropout at inference: the identity, no arithmetic."""
    return Cost("dropout", "other", in_shape, in_shape)


@formula("squeeze_excitation")
def squeeze_excitation(in_shape: Shape, squeeze_channels: int, activation: str = "relu",
                       gate: str = "sigmoid") -> Cost:
    """SE = avgpool(NCHW) + fc1 C->s + act + fc2 s->C + gate + x * scale (each part as its own formula)."""
    n, c = in_shape[:2]
    pooled = adaptive_avgpool2d(in_shape, 1)
    fc1 = conv2d(pooled.out_shape, squeeze_channels, 1, bias=True)
    act = cost(activation, fc1.out_shape)
    fc2 = conv2d(act.out_shape, c, 1, bias=True)
    sig = cost(gate, fc2.out_shape)
    scale = mul(in_shape, sig.out_shape)
    parts = (("avgpool", pooled), ("fc1", fc1), ("activation", act), ("fc2", fc2), ("scale_activation", sig),
             ("", scale))
    return Cost("squeeze_excitation", "other", in_shape, in_shape, macs=sum(p.macs for _, p in parts),
                bias_adds=sum(p.bias_adds for _, p in parts), params=sum(p.params for _, p in parts),
                input_elements=math.prod(in_shape), parts=parts)


# -- more activations, elementwise ops, reductions, matrix products, attention, data movement ------------
# (forward ops added for issue 10 go above this line)


# -- backward ops of a training step --------------------------------------------------------------------
# (formulas for aten backward ops go above this line)
