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
from functools import partial, update_wrapper
from typing import Callable, Sequence

from cnncost.errors import CnnCostError
from cnncost.registry import Registry

CATEGORIES = ("conv", "linear", "norm", "activation", "pool", "elementwise", "other")
CORE = ("conv", "linear")
DTYPE_BYTES = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "fp64": 8, "int8": 1}
ACTIVATIONS = ("relu", "relu6", "silu", "sigmoid", "gelu", "hardswish", "hardsigmoid", "tanh")

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Cost:
    """What one layer costs: work, weights and the elements it reads and writes."""

    kind: str
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
    category: str = ""  # a registered kind's category comes from its registration (see `formula`)
    parts: tuple[tuple[str, "Cost"], ...] = ()

    def __post_init__(self):
        if not self.category:
            if self.kind not in CATEGORY_OF:
                raise ValueError(f"layer kind {self.kind!r} is not registered: give its category")
            object.__setattr__(self, "category", CATEGORY_OF[self.kind])

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


FORMULAS: Registry[Callable[..., Cost]] = Registry("layer kind")
CATEGORY_OF: dict[str, str] = {}  # layer kind -> op category, as each formula's registration states it


def formula(*kinds: str, category: str) -> Callable:
    """Register a formula under one or more layer kinds of one category; registering a kind twice is an error."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}")

    def register(fn: Callable[..., Cost]) -> Callable[..., Cost]:
        FORMULAS.add(kinds, fn)
        CATEGORY_OF.update(dict.fromkeys(kinds, category))
        return fn

    return register


def for_each_kind(kinds: Sequence[str], fn: Callable[..., Cost], category: str, **fixed) -> None:
    """Register fn once per kind, with that kind (and any other fixed keyword arguments) bound."""
    for kind in kinds:
        formula(kind, category=category)(specialise(fn, kind=kind, **fixed))


def category_of(kind: str) -> str:
    """The op category of a layer kind (conv, linear, norm, activation, pool, elementwise, other)."""
    return CATEGORY_OF.get(kind, "other")


def cost(kind: str, in_shape: Sequence[int], **hyper) -> Cost:
    """Cost of one layer of a registered kind, e.g. cost('conv2d', (1, 3, 224, 224), out_channels=64, kernel=7)."""
    if kind not in FORMULAS:
        raise CnnCostError(f"no formula for layer kind {kind!r}; known kinds: {', '.join(sorted(FORMULAS))}")
    return FORMULAS[kind](check_shape(in_shape), **hyper)


# -- shape helpers ---------------------------------------------------------------------


def ntuple(value: int | Sequence[int | None] | None, rank: int, what: str) -> tuple:
    """An int (or one per spatial dim, or a one-element list) as `rank` values, as PyTorch's _ntuple; None kept."""
    if value is None or isinstance(value, int):
        return (value,) * rank
    value = tuple(None if v is None else int(v) for v in value)
    if len(value) == 1:
        return value * rank
    if len(value) != rank:
        raise CnnCostError(f"{what} must be one number or {rank}, got {value!r}")
    return value


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


LAYOUTS = {1: "NCL", 2: "NCHW", 3: "NCDHW"}


def spatial_dims(shape: Shape, rank: int, batched: bool = False) -> Shape:
    """The last `rank` sizes of an N, C, *spatial shape (N optional unless batched); an error for other shapes."""
    if len(shape) not in ((rank + 2,) if batched else (rank + 1, rank + 2)):
        raise CnnCostError(f"expected an {LAYOUTS.get(rank, f'N, C and {rank} spatial dims')} input, "
                           f"got shape {fmt_shape(shape)}")
    return shape[-rank:]


def window_hyper(rank: int, **values) -> list[tuple[int, ...]]:
    """Kernel/stride/padding/dilation/output_padding as `rank`-tuples, checked: sizes positive, paddings >= 0."""
    out = []
    for name, value in values.items():
        value = ntuple(value, rank, name.replace("_", " "))
        if "padding" in name and min(value) < 0:
            raise CnnCostError(f"{name.replace('_', ' ')} must not be negative, got {value}")
        if "padding" not in name and min(value) <= 0:
            raise CnnCostError(f"{name} must be positive, got {value}")
        out.append(value)
    return out


def window_outs(shape: Shape, kernel, stride, padding, dilation, ceil_mode=False, rank: int = 2) -> tuple[int, ...]:
    """Output sizes of a sliding window over the last `rank` (spatial) dims of an (N,) C, *spatial shape."""
    spatial = spatial_dims(shape, rank)
    k, s, p, d = window_hyper(rank, kernel=kernel, stride=stride, padding=padding, dilation=dilation)
    return tuple(window_out(spatial[i], k[i], s[i], p[i], d[i], ceil_mode) for i in range(rank))


def transposed_out(size: int, kernel: int, stride: int, padding: int, dilation: int, output_padding: int) -> int:
    """out = (size - 1) stride - 2 padding + dilation (kernel - 1) + output_padding + 1 (transposed convolution)."""
    if output_padding >= stride and output_padding >= dilation:
        raise CnnCostError(f"output padding {output_padding} must be smaller than the stride {stride} "
                           f"or the dilation {dilation}")
    out = (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
    if out <= 0:
        raise CnnCostError(f"padding {padding} leaves no output of a transposed convolution on {size} positions")
    return out


def fmt_window(value, rank: int = 2) -> str:
    """(3, 3) as '3x3'; 3 as '3x3' in 2-d, '3x3x3' in 3-d."""
    return fmt_shape(ntuple(value, rank, "value"))


# -- conv and linear -------------------------------------------------------------------


def specialise(fn: Callable[..., Cost], **fixed) -> Callable[..., Cost]:
    """fn with some keyword arguments fixed, keeping its name and docstring: one formula serving several kinds."""
    return update_wrapper(partial(fn, **fixed), fn)


def register_ranks(template: str, fn: Callable[..., Cost], category: str, ranks=(1, 2, 3), **fixed) -> None:
    """Register fn as kind template.format(rank) for each spatial rank, with its kind and rank fixed."""
    for rank in ranks:
        kind = template.format(rank)
        formula(kind, category=category)(specialise(fn, kind=kind, rank=rank, **fixed))


def conv(in_shape: Shape, out_channels: int, kernel=1, stride=1, padding=0, dilation=1, groups: int = 1,
         bias: bool = False, output_padding=0, *, kind: str = "conv2d", rank: int = 2,
         transposed: bool = False) -> Cost:
    """MACs = N x C_out x (C_in / groups) x prod(kernel) x positions (output positions; input ones if transposed)."""
    spatial = spatial_dims(in_shape, rank, batched=True)
    n, c_in = in_shape[:2]
    if out_channels <= 0 or groups <= 0:
        raise CnnCostError(f"out channels and groups must be positive, got {out_channels} and {groups}")
    if c_in % groups or out_channels % groups:
        raise CnnCostError(f"groups={groups} must divide both input channels {c_in} and output channels {out_channels}")
    if transposed:
        k, s, p, d, op = window_hyper(rank, kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                                      output_padding=output_padding)
        out_spatial = tuple(transposed_out(*dims) for dims in zip(spatial, k, s, p, d, op))
    else:
        out_spatial = window_outs(in_shape, kernel, stride, padding, dilation, rank=rank)
    out_shape = (n, out_channels, *out_spatial)
    weights = out_channels * (c_in // groups) * math.prod(ntuple(kernel, rank, "kernel"))
    positions = math.prod(spatial if transposed else out_spatial)  # each weight meets each of these once per image
    return Cost(kind, in_shape, out_shape, macs=n * positions * weights,
                bias_adds=math.prod(out_shape) if bias else 0, params=weights + (out_channels if bias else 0),
                input_elements=math.prod(in_shape), kernel=fmt_window(kernel, rank), stride=fmt_window(stride, rank),
                groups=groups)


register_ranks("conv{}d", conv, "conv")
register_ranks("conv_transpose{}d", conv, "conv", transposed=True)
conv2d = FORMULAS["conv2d"]


@formula("linear", category="linear")
def linear(in_shape: Shape, out_features: int, bias: bool = True) -> Cost:
    """MACs = (elements / in_features) x in_features x out_features."""
    if out_features <= 0:
        raise CnnCostError(f"out features must be positive, got {out_features}")
    rows, in_features = math.prod(in_shape[:-1]), in_shape[-1]
    out_shape = (*in_shape[:-1], out_features)
    return Cost("linear", in_shape, out_shape, macs=rows * in_features * out_features,
                bias_adds=rows * out_features if bias else 0,
                params=in_features * out_features + (out_features if bias else 0),
                input_elements=math.prod(in_shape))


# -- per-element layers ----------------------------------------------------------------


def elementwise(kind: str, in_shape: Shape, **extra) -> Cost:
    """A layer that touches each element once: ops = prod(shape), output shape = input shape."""
    n = math.prod(in_shape)
    return Cost(kind, in_shape, in_shape, macs=n, input_elements=n, **extra)


# -- normalization ---------------------------------------------------------------------

STATISTICS_OPS = 4  # per element: mean (add), centre (subtract), variance (square-accumulate), scale by 1 / std


def normalization(kind: str, in_shape: Shape, statistics: bool, affine: bool, params: int = 0,
                  buffers: int = 0) -> Cost:
    """ops per element = 4 computing statistics (mean, centre, square-sum, 1/std scale) + 1 affine; 1 when folded."""
    ops = STATISTICS_OPS + bool(affine) if statistics else 1
    n = math.prod(in_shape)
    return Cost(kind, in_shape, in_shape, macs=n * ops, params=params, buffers=buffers, input_elements=n)


BATCH_NORM_DIMS = {"batchnorm1d": (2, 3), "batchnorm2d": (4,), "batchnorm3d": (5,)}


def batch_norm_kind(ndim: int) -> str:
    """batchnorm1d for N x C (x L), batchnorm2d for NCHW, batchnorm3d for NCDHW inputs."""
    return next((kind for kind, dims in BATCH_NORM_DIMS.items() if ndim in dims), "batchnorm2d")


def batch_norm(in_shape: Shape, affine: bool = True, batch_stats: bool = False, running_stats: bool = True, *,
               kind: str = "batchnorm2d", rank: int = 2) -> Cost:
    """Batch norm: 1 MAC per element folded (x * scale + shift); 4 (+1 affine) with batch statistics; params 2C."""
    if len(in_shape) not in BATCH_NORM_DIMS[kind]:
        raise CnnCostError(f"{kind} expects {' or '.join(map(str, BATCH_NORM_DIMS[kind]))}-d input, "
                           f"got shape {fmt_shape(in_shape)}")
    c = in_shape[1]
    return normalization(kind, in_shape, batch_stats, affine, params=2 * c if affine else 0,
                         buffers=2 * c if running_stats else 0)


register_ranks("batchnorm{}d", batch_norm, "norm")


@formula("instance_norm", category="norm")
def instance_norm(in_shape: Shape, affine: bool = False, running_stats: bool = False) -> Cost:
    """Instance norm: per (N, C) statistics, 4 ops per element (+1 affine); 1 folded with running stats."""
    if len(in_shape) < 3:
        raise CnnCostError(f"instance norm expects an N, C, *spatial input, got shape {fmt_shape(in_shape)}")
    c = in_shape[1]
    return normalization("instance_norm", in_shape, not running_stats, affine, params=2 * c if affine else 0,
                         buffers=2 * c if running_stats else 0)


@formula("group_norm", category="norm")
def group_norm(in_shape: Shape, groups: int, affine: bool = True) -> Cost:
    """Group norm: per (N, group) statistics, 4 ops per element + 1 affine; params 2C."""
    c = in_shape[1] if len(in_shape) > 1 else 0
    if groups <= 0 or c % groups:
        raise CnnCostError(f"groups={groups} must divide the channels of shape {fmt_shape(in_shape)}")
    return normalization("group_norm", in_shape, True, affine, params=2 * c if affine else 0)


@formula("layer_norm", category="norm")
def layer_norm(in_shape: Shape, normalized_shape, affine: bool = True, bias: bool = True) -> Cost:
    """Layer norm over the last dims: 4 ops per element + 1 affine; params 2 x prod(normalized_shape)."""
    normalized = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(in_shape[len(in_shape) - len(normalized):]) != normalized or len(normalized) > len(in_shape):
        raise CnnCostError(f"normalized shape {fmt_shape(normalized)} is not the end of shape {fmt_shape(in_shape)}")
    per_tensor = math.prod(normalized) if affine else 0
    return normalization("layer_norm", in_shape, True, affine, params=per_tensor * (1 + bool(bias)))


@formula("lrn", category="norm")
def lrn(in_shape: Shape, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> Cost:
    """Local response norm a / (k + alpha/n sum a^2)^beta: size + 4 ops per element (square, sum, MAC, pow, div)."""
    if size <= 0 or len(in_shape) < 3:
        raise CnnCostError(f"local response norm needs size > 0 and an N, C, ... input, got size {size} "
                           f"on {fmt_shape(in_shape)}")
    n = math.prod(in_shape)
    return Cost("lrn", in_shape, in_shape, macs=n * (size + 4), input_elements=n, kernel=str(size))


def activation(in_shape: Shape, kind: str = "relu") -> Cost:
    """An activation (ReLU, ReLU6, SiLU, sigmoid, GELU, ...): 1 op per element."""
    return elementwise(kind, in_shape)


for_each_kind(ACTIVATIONS, activation, "activation")


# -- pooling ---------------------------------------------------------------------------


def pool(kind: str, in_shape: Shape, kernel, stride, padding, dilation, ceil_mode, rank: int = 2) -> Cost:
    """A sliding-window pool: ops = output elements x prod(kernel)."""
    stride = kernel if stride in (None, [], ()) else stride
    out_spatial = window_outs(in_shape, kernel, stride, padding, dilation, ceil_mode, rank)
    k, p = ntuple(kernel, rank, "kernel"), ntuple(padding, rank, "padding")
    if any(2 * pi > ki for pi, ki in zip(p, k)):
        raise CnnCostError(f"padding {p} must be at most half the kernel {k}")
    out_shape = (*in_shape[:-rank], *out_spatial)
    return Cost(kind, in_shape, out_shape, macs=math.prod(out_shape) * math.prod(k),
                input_elements=math.prod(in_shape), kernel=fmt_window(kernel, rank), stride=fmt_window(stride, rank))


def max_pool(in_shape: Shape, kernel, stride=None, padding=0, dilation=1, ceil_mode: bool = False, *,
             kind: str = "maxpool2d", rank: int = 2) -> Cost:
    """Max pool: output elements x prod(kernel) comparisons."""
    return pool(kind, in_shape, kernel, stride, padding, dilation, ceil_mode, rank)


def avg_pool(in_shape: Shape, kernel, stride=None, padding=0, ceil_mode: bool = False, *, kind: str = "avgpool2d",
             rank: int = 2) -> Cost:
    """Average pool: output elements x prod(kernel) additions."""
    if rank == 3 and any(size < k for size, k in zip(in_shape[-3:], ntuple(kernel, 3, "kernel"))):
        raise CnnCostError(f"input {fmt_shape(in_shape)} is smaller than the kernel {kernel} (PyTorch's avg_pool3d)")
    return pool(kind, in_shape, kernel, stride, padding, 1, ceil_mode, rank)


register_ranks("maxpool{}d", max_pool, "pool")
register_ranks("avgpool{}d", avg_pool, "pool")


def adaptive_bins(size: int, out: int) -> int:
    """Total input positions summed by adaptive pooling along one dim: sum of the bins' widths."""
    return sum(math.ceil((i + 1) * size / out) - (i * size) // out for i in range(out))


def adaptive_pool(in_shape: Shape, output_size=1, keepdim: bool = True, *, kind: str = "adaptive_avgpool2d",
                  rank: int = 2) -> Cost:
    """Adaptive pool: one add (or compare) per input position in each output bin (N C H W for output 1x1)."""
    spatial = spatial_dims(in_shape, rank)
    outs = tuple(size if o is None else o for size, o in zip(spatial, ntuple(output_size, rank, "output size")))
    if min(outs) <= 0:
        raise CnnCostError(f"output size must be positive, got {output_size}")
    out_shape = (*in_shape[:-rank], *outs) if keepdim else in_shape[:-rank]  # x.mean((2, 3)) drops the dims
    macs = math.prod(in_shape[:-rank]) * math.prod(adaptive_bins(size, o) for size, o in zip(spatial, outs))
    return Cost(kind, in_shape, out_shape, macs=macs, input_elements=math.prod(in_shape),
                kernel=f"->{fmt_shape(outs)}")


register_ranks("adaptive_avgpool{}d", adaptive_pool, "pool")
register_ranks("adaptive_maxpool{}d", adaptive_pool, "pool")
adaptive_avgpool2d = FORMULAS["adaptive_avgpool2d"]


# -- resampling ------------------------------------------------------------------------

@dataclass(frozen=True)
class Resampling:
    """An interpolation mode: input values read (multiply-accumulated) per output element and spatial dim (taps),
    the spatial ranks it applies to, and its aten op (upsample_bilinear2d, and _backward)."""

    mode: str
    taps: int
    ranks: tuple[int, ...]
    aten: str
    antialias: str = ""  # the aten op of antialias=True, costed by the taps of its mode

    @property
    def kind(self) -> str:
        """The layer kind: upsample_<mode> (nearest-exact: upsample_nearest_exact)."""
        return "upsample_" + self.mode.replace("-", "_")

    def ops(self) -> list[str]:
        """Its forward aten ops, one per rank (and the antialiased one)."""
        return [f"{self.aten}{rank}d" for rank in self.ranks] + ([self.antialias] if self.antialias else [])


# One table of interpolation modes: it drives the formulas, the tracer's forward and backward handlers, the kinds.
RESAMPLING = {r.mode: r for r in (
    Resampling("nearest", 1, (1, 2, 3), "upsample_nearest"),
    Resampling("nearest-exact", 1, (1, 2, 3), "_upsample_nearest_exact"),
    Resampling("linear", 2, (1,), "upsample_linear"),
    Resampling("bilinear", 2, (2,), "upsample_bilinear", "_upsample_bilinear2d_aa"),
    Resampling("bicubic", 4, (2,), "upsample_bicubic", "_upsample_bicubic2d_aa"),
    Resampling("trilinear", 2, (3,), "upsample_trilinear"),
)}


def ntuple_float(value, rank: int) -> tuple[float, ...]:
    """A scale factor (one number, or one per spatial dim) as `rank` floats."""
    value = (value,) * rank if isinstance(value, (int, float)) else tuple(float(v) for v in value)
    return value * rank if len(value) == 1 else value


def upsample(in_shape: Shape, size=None, scale_factor=None, align_corners: bool | None = None, *,
             mode: str = "nearest") -> Cost:
    """Interpolation: output elements x taps; taps = 1 nearest, 2 linear, 4 bilinear, 8 trilinear, 16 bicubic."""
    rank = len(in_shape) - 2
    if mode not in RESAMPLING:
        raise CnnCostError(f"unknown interpolation mode {mode!r}; choose one of {', '.join(RESAMPLING)}")
    resampling = RESAMPLING[mode]
    if rank not in resampling.ranks:
        raise CnnCostError(f"{mode} interpolation does not apply to shape {fmt_shape(in_shape)}")
    spatial = in_shape[2:]
    if size is not None:
        outs = ntuple(size, rank, "size")
    elif scale_factor is not None:
        outs = tuple(math.floor(s * f) for s, f in zip(spatial, ntuple_float(scale_factor, rank)))
    else:
        raise CnnCostError("interpolation needs an output size or a scale factor")
    if min(outs) <= 0:
        raise CnnCostError(f"interpolation of {fmt_shape(in_shape)} to {outs} leaves no output")
    out_shape = (*in_shape[:2], *outs)
    return Cost(resampling.kind, in_shape, out_shape, macs=math.prod(out_shape) * resampling.taps ** rank,
                input_elements=math.prod(in_shape), kernel=f"->{fmt_shape(outs)}")


formula("upsample", category="pool")(upsample)  # any mode, by its `mode` argument (nn.Upsample)
for _resampling in RESAMPLING.values():
    formula(_resampling.kind, category="pool")(specialise(upsample, mode=_resampling.mode))


def roi_samples(box: Sequence[float], bins: tuple[int, int], spatial_scale: float, sampling_ratio: int,
                aligned: bool) -> int:
    """Sampling points per bin of one RoI (x1, y1, x2, y2), as torchvision's roi_align kernel chooses them."""
    if sampling_ratio > 0:
        return sampling_ratio * sampling_ratio
    sizes = [(box[2 + i] - box[i]) * spatial_scale for i in (1, 0)]  # height, width in feature-map units
    sizes = [size if aligned else max(size, 1.0) for size in sizes]
    return math.prod(max(math.ceil(size / b), 0) for size, b in zip(sizes, bins))


@formula("roi_align", category="pool")
def roi_align(in_shape: Shape, output_size, rois: int | None = None, boxes: Sequence[Sequence[float]] = (),
              spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False) -> Cost:
    """RoI align: per channel, bin and sampling point one bilinear read of 4 taps: MACs = C x 4 x points."""
    bins = ntuple(output_size, 2, "output size")
    count = len(boxes) if rois is None else rois
    if sampling_ratio <= 0 and len(boxes) != count:
        raise CnnCostError("RoI align with an adaptive sampling ratio needs the boxes' coordinates")
    per_bin = [roi_samples(box, bins, spatial_scale, sampling_ratio, aligned) for box in boxes] if boxes \
        else [sampling_ratio * sampling_ratio] * count
    c = in_shape[1]
    return Cost("roi_align", in_shape, (count, c, *bins), macs=c * math.prod(bins) * 4 * sum(per_bin),
                input_elements=math.prod(in_shape) + 5 * count, kernel=fmt_shape(bins))


@formula("grid_sample", category="pool")
def grid_sample(in_shape: Shape, grid: Shape, mode: str = "bilinear") -> Cost:
    """Grid sampling: output elements x taps; taps = 1 nearest, 2 per spatial dim bilinear, 4 per dim bicubic."""
    rank = len(in_shape) - 2
    if rank not in (2, 3) or len(grid) != rank + 2 or grid[0] != in_shape[0] or grid[-1] != rank:
        raise CnnCostError(f"grid {fmt_shape(grid)} does not sample input {fmt_shape(in_shape)}")
    out_shape = (*in_shape[:2], *grid[1:-1])
    return Cost("grid_sample", in_shape, out_shape, macs=math.prod(out_shape) * RESAMPLING[mode].taps ** rank,
                input_elements=math.prod(in_shape) + math.prod(grid), kernel=mode)


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
    return Cost(kind, in_shape, out_shape, macs=math.prod(out_shape) * (len(shapes) - 1),
                input_elements=sum(math.prod(s) for s in shapes))


@formula("add", category="elementwise")
def add(in_shape: Shape, other: Shape | None = None, others: Sequence[Shape] = ()) -> Cost:
    """Elementwise add (residual): 1 add per output element per extra input."""
    return combine("add", in_shape, [*([other] if other else [in_shape]), *others])


@formula("mul", category="elementwise")
def mul(in_shape: Shape, other: Shape | None = None) -> Cost:
    """Elementwise multiply (SE scaling): 1 multiply per output element."""
    return combine("mul", in_shape, [other or in_shape])


@formula("concat", category="other")
def concat(in_shape: Shape, others: Sequence[Shape] = (), dim: int = 1) -> Cost:
    """Concatenation: no arithmetic; reads every input and writes their sum along dim."""
    shapes = [in_shape, *(check_shape(s) for s in others)]
    rest = {s[:dim] + s[dim + 1:] for s in shapes}
    if len(rest) != 1:
        raise CnnCostError(f"cannot concatenate shapes {', '.join(fmt_shape(s) for s in shapes)} along dim {dim}")
    out_shape = in_shape[:dim] + (sum(s[dim] for s in shapes),) + in_shape[dim + 1:]
    return Cost("concat", in_shape, out_shape, input_elements=sum(math.prod(s) for s in shapes))


@formula("flatten", category="other")
def flatten(in_shape: Shape) -> Cost:
    """Flatten to (N, rest): a view, no arithmetic and no traffic."""
    return Cost("flatten", in_shape, (in_shape[0], math.prod(in_shape[1:])))


@formula("dropout", category="other")
def dropout(in_shape: Shape) -> Cost:
    """Dropout at inference: the identity, no arithmetic."""
    return Cost("dropout", in_shape, in_shape)


@formula("squeeze_excitation", category="other")
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
    return Cost("squeeze_excitation", in_shape, in_shape, macs=sum(p.macs for _, p in parts),
                bias_adds=sum(p.bias_adds for _, p in parts), params=sum(p.params for _, p in parts),
                input_elements=math.prod(in_shape), parts=parts)


# -- more activations, elementwise ops, reductions, matrix products, attention, data movement ------------
# Ops per element, decided once: a pointwise activation or elementwise op is 1 op per element, however many
# instructions it takes (as ReLU above); softmax is exp + sum + divide = 3; a reduction is 1 per input element.

POINTWISE_ACTIVATIONS = ("leaky_relu", "elu", "celu", "selu", "mish", "hardtanh", "softplus", "hardshrink",
                         "softshrink", "logsigmoid", "threshold")
UNARY = ("neg", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "rsqrt", "abs", "reciprocal",
         "clamp", "clamp_min", "clamp_max", "sign", "floor", "ceil", "round", "trunc", "frac", "sin", "cos",
         "tan", "atan", "erf", "erfc", "logical_not", "bitwise_not", "isnan", "isinf", "nan_to_num", "cumsum")
BINARY = ("sub", "rsub", "div", "pow", "maximum", "minimum", "fmax", "fmin", "remainder", "fmod", "floor_divide",
          "atan2", "hypot", "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor",
          "bitwise_and", "bitwise_or", "bitwise_xor")
REDUCTIONS = ("sum", "mean", "prod", "amax", "amin", "max", "min", "argmax", "argmin", "any", "all")


def reduced(in_shape: Shape, dims: int | Sequence[int] | None, keepdim: bool) -> Shape:
    """The shape left after reducing dims (all dims when None or empty), kept as 1s with keepdim."""
    if isinstance(dims, int):
        dims = [dims]
    dims = dims or range(len(in_shape))
    if any(not -len(in_shape) <= d < len(in_shape) for d in dims):
        raise CnnCostError(f"dims {list(dims)} out of range for shape {fmt_shape(in_shape)}")
    gone = {d % len(in_shape) for d in dims}
    out = tuple(1 if i in gone else s for i, s in enumerate(in_shape) if keepdim or i not in gone)
    return out or (1,)


def pointwise_activation(in_shape: Shape, kind: str) -> Cost:
    """leaky_relu, elu, celu, selu, mish, hardtanh (any bounds), softplus, shrinks, logsigmoid: 1 op per element."""
    return elementwise(kind, in_shape)


@formula("prelu", category="activation")
def prelu(in_shape: Shape, num_parameters: int = 1) -> Cost:
    """PReLU: 1 op per element (x, or slope x); params = num_parameters slopes (1, or one per channel)."""
    return elementwise("prelu", in_shape, params=num_parameters)


def softmax(in_shape: Shape, kind: str = "softmax") -> Cost:
    """softmax / log_softmax along a dim: exp + sum + divide (log-softmax: subtract) = 3 ops per element."""
    n = math.prod(in_shape)
    return Cost(kind, in_shape, in_shape, macs=3 * n, input_elements=n)


def unary(in_shape: Shape, kind: str) -> Cost:
    """neg, exp, log, sqrt, rsqrt, abs, reciprocal, clamp, cumsum, ...: 1 op per element."""
    return elementwise(kind, in_shape)


def binary(in_shape: Shape, other: Shape | None = None, *, kind: str) -> Cost:
    """sub, div, pow, maximum, comparisons, ... of two broadcast operands: 1 op per output element."""
    return combine(kind, in_shape, [other or in_shape])


def ternary(in_shape: Shape, others: Sequence[Shape] = (), *, kind: str) -> Cost:
    """addcmul/addcdiv x + v (a * b), lerp x + w (y - x): 2 ops per output element (of the 3 operands broadcast)."""
    return combine(kind, in_shape, others)


@formula("where", category="elementwise")
def where(in_shape: Shape, other: Shape = (1,), condition: Shape = (1,)) -> Cost:
    """where(condition, x, y): 1 select per output element (of the three shapes broadcast)."""
    shapes = [in_shape, check_shape(other), check_shape(condition)]
    out_shape = broadcast(shapes)
    return Cost("where", in_shape, out_shape, macs=math.prod(out_shape),
                input_elements=sum(math.prod(s) for s in shapes))


def reduction(in_shape: Shape, dims: int | Sequence[int] | None = None, keepdim: bool = False, *,
              kind: str) -> Cost:
    """sum, mean, prod, amax, amin, max, min, argmax, any, ... over dims (all when none): 1 op per input element."""
    n = math.prod(in_shape)
    return Cost(kind, in_shape, reduced(in_shape, dims, keepdim), macs=n, input_elements=n)


def variance(in_shape: Shape, dims: int | Sequence[int] | None = None, keepdim: bool = False, *,
             kind: str) -> Cost:
    """var (var_mean): mean's add, subtract, square, accumulate = 4 ops per input element; std: + 1 sqrt per output."""
    n, out_shape = math.prod(in_shape), reduced(in_shape, dims, keepdim)
    roots = math.prod(out_shape) if kind.startswith("std") else 0
    return Cost(kind, in_shape, out_shape, macs=4 * n + roots, input_elements=n)


@formula("vector_norm", category="elementwise")
def vector_norm(in_shape: Shape, dims: int | Sequence[int] | None = None, keepdim: bool = False) -> Cost:
    """p-norm over dims (norm, linalg_vector_norm): |x|^p and add = 2 ops per input element + 1 root per output."""
    n, out_shape = math.prod(in_shape), reduced(in_shape, dims, keepdim)
    return Cost("vector_norm", in_shape, out_shape, macs=2 * n + math.prod(out_shape),
                input_elements=n)


# The elementwise-like kinds, one loop: (kinds, formula, category).
for _kinds, _fn, _category in ((POINTWISE_ACTIVATIONS, pointwise_activation, "activation"),
                               (("softmax", "log_softmax"), softmax, "activation"),
                               (UNARY, unary, "elementwise"), (BINARY, binary, "elementwise"),
                               (REDUCTIONS, reduction, "elementwise"),
                               (("addcmul", "addcdiv", "lerp"), ternary, "elementwise"),
                               (("var", "std", "var_mean", "std_mean"), variance, "elementwise"),
                               (("cumprod", "sgn"), unary, "elementwise")):  # cumprod, sgn: only backward runs them
    for_each_kind(_kinds, _fn, _category)


@formula("sort", "topk", category="other")
def sort(in_shape: Shape, dim: int = -1, k: int | None = None) -> Cost:
    """sort along dim: ceil(log2 n) comparisons per element, slices of n; topk(k): ceil(log2 k) (a heap); at least 1."""
    dim = dim % len(in_shape)
    n, keep = in_shape[dim], in_shape[dim] if k is None else k
    if not 0 < keep <= n:
        raise CnnCostError(f"topk k={k} must be between 1 and the size {n} of dim {dim}")
    out_shape = in_shape[:dim] + (keep,) + in_shape[dim + 1:]
    depth = max(1, math.ceil(math.log2(keep)))
    return Cost("sort" if k is None else "topk", in_shape, out_shape, macs=math.prod(in_shape) * depth,
                input_elements=math.prod(in_shape))


@formula("attention", category="linear")
def attention(in_shape: Shape, key: Shape, value: Shape) -> Cost:
    """Q K^T and scores x V for q (..., L, E), k (..., S, E), v (..., S, Ev): MACs = B H L S E + B H L S Ev."""
    key, value = check_shape(key), check_shape(value)
    if min(len(in_shape), len(key), len(value)) < 2 or key[-1] != in_shape[-1] or value[-2] != key[-2]:
        raise CnnCostError(f"attention needs q (..., L, E), k (..., S, E), v (..., S, Ev); got "
                           f"{fmt_shape(in_shape)}, {fmt_shape(key)}, {fmt_shape(value)}")
    (length, width), source, value_width = in_shape[-2:], key[-2], value[-1]
    heads = math.prod(in_shape[:-2])
    return Cost("attention", in_shape, (*in_shape[:-1], value_width),
                macs=heads * length * source * (width + value_width),
                input_elements=math.prod(in_shape) + math.prod(key) + math.prod(value))


@formula("scaled_dot_product_attention", category="other")
def scaled_dot_product_attention(in_shape: Shape, key: Shape, value: Shape, mask: Shape | None = None) -> Cost:
    """softmax(Q K^T x scale + mask) V: attention's two products (linear) + 1 scale, 1 mask add, 3 softmax per score."""
    products = attention(in_shape, key, value)
    scores = (*in_shape[:-1], key[-2])
    parts = (("", products), ("scale", mul(scores, (1,))), *((("mask", add(scores, mask)),) if mask else ()),
             ("softmax", softmax(scores)))
    return Cost("scaled_dot_product_attention", in_shape, products.out_shape,
                macs=sum(p.macs for _, p in parts), input_elements=products.input_elements, parts=parts)


@formula("multi_head_attention", category="other")
def multi_head_attention(in_shape: Shape, key: Shape, value: Shape, heads: int, in_bias: bool = True,
                         out_bias: bool = True, mask: bool = False, average_weights: bool = False,
                         extra_keys: int = 0, strided: bool = False) -> Cost:
    """nn.MultiheadAttention on q (L, N, E): q, k, v projections + attention of heads x E/heads + out-projection."""
    # strided: a batch_first query of batch > 1 reaches the in-projection transposed, where aten.linear runs as
    # mm + add, not addmm: its bias adds are then a part of their own (in_proj_bias, no MACs), which tools that count
    # addmm's bias (ptflops's aten backend) do not see.
    key, value = check_shape(key), check_shape(value)
    length, batch, embed = (in_shape[0], 1, in_shape[1]) if len(in_shape) == 2 else in_shape
    if embed % heads:
        raise CnnCostError(f"embedding size {embed} is not divisible by {heads} heads")
    source = key[0] + extra_keys
    queries, keys = (batch, heads, length, embed // heads), (batch, heads, source, embed // heads)
    sdpa = scaled_dot_product_attention(queries, keys, keys, (batch, heads, length, source) if mask else None)
    averaged = (("average", reduction((batch, heads, length, source), 1, kind="mean")),) if average_weights else ()
    fused_bias = in_bias and not strided
    projections = [linear(shape_, embed, fused_bias) for shape_ in (in_shape, key, value)]
    in_bias_adds = [(f"{name}_bias", Cost("in_proj_bias", p.out_shape, p.out_shape, bias_adds=math.prod(p.out_shape),
                                          input_elements=math.prod(p.out_shape), category="linear"))
                    for name, p in zip(("q_proj", "k_proj", "v_proj"), projections)] if in_bias and strided else []
    parts = (("q_proj", projections[0]), ("k_proj", projections[1]), ("v_proj", projections[2]), *in_bias_adds,
             *sdpa.parts, *averaged, ("out_proj", linear(in_shape, embed, out_bias)))
    return Cost("multi_head_attention", in_shape, in_shape, macs=sum(p.macs for _, p in parts),
                bias_adds=sum(p.bias_adds for _, p in parts), params=sum(p.params for _, p in parts),
                input_elements=math.prod(in_shape) + math.prod(key) + math.prod(value), parts=parts)


@formula("data_movement", category="other")
def data_movement(in_shape: Shape, out_shape: Sequence[int] | None = None, read: int | None = None) -> Cost:
    """pad, roll, index, gather, stack, ...: no arithmetic; reads `read` elements (default: input), writes output."""
    out_shape = in_shape if out_shape is None else tuple(int(s) for s in out_shape)
    return Cost("data_movement", in_shape, out_shape,
                input_elements=math.prod(in_shape) if read is None else read)

IOU_OPS = 11  # intersection: 2 max + 2 min + 2 sub + 1 mul; union: 1 add + 1 sub; 1 divide; 1 compare


@formula("nms", category="other")
def nms(in_shape: Shape) -> Cost:
    """Non-maximum suppression of N boxes (N x 4), upper bound: sort (ceil(log2 N) per box) + N(N-1)/2 IoUs x 11 ops."""
    if len(in_shape) != 2 or in_shape[1] != 4:
        raise CnnCostError(f"nms takes boxes of shape N x 4, got {fmt_shape(in_shape)}")
    n = in_shape[0]
    return Cost("nms", in_shape, (n,), macs=n * max(1, math.ceil(math.log2(n))) + n * (n - 1) // 2 * IOU_OPS,
                input_elements=n * 5)


@formula("glu", category="activation")
def glu(in_shape: Shape, dim: int = -1) -> Cost:
    """GLU a * sigmoid(b) of the two halves along dim: 1 sigmoid + 1 multiply = 2 ops per output element."""
    dim = dim % len(in_shape)
    if in_shape[dim] % 2:
        raise CnnCostError(f"glu halves dim {dim}, whose size {in_shape[dim]} is odd")
    out_shape = in_shape[:dim] + (in_shape[dim] // 2,) + in_shape[dim + 1:]
    return Cost("glu", in_shape, out_shape, macs=2 * math.prod(out_shape),
                input_elements=math.prod(in_shape))


EMBEDDING_BAG_MODES = ("sum", "mean", "max")


@formula("embedding_bag", category="other")
def embedding_bag(in_shape: Shape, embedding_dim: int, bags: int, mode: str = "mean", weighted: bool = False) -> Cost:
    """EmbeddingBag: 1 add (max: compare) per gathered element (indices x dim), + 1 multiply each if weighted,
    + 1 divide per output element for mean."""
    if mode not in EMBEDDING_BAG_MODES:
        raise CnnCostError(f"embedding_bag mode must be one of {', '.join(EMBEDDING_BAG_MODES)}, got {mode!r}")
    gathered, out_shape = math.prod(in_shape) * embedding_dim, (bags, embedding_dim)
    macs = gathered * (1 + bool(weighted)) + (math.prod(out_shape) if mode == "mean" else 0)
    return Cost("embedding_bag", in_shape, out_shape, macs=macs,
                input_elements=gathered + math.prod(in_shape) * (1 + bool(weighted)))


@formula("logsumexp", category="elementwise")
def logsumexp(in_shape: Shape, dims: int | Sequence[int] | None = None, keepdim: bool = False) -> Cost:
    """log(sum(exp(x))) over dims: max, subtract, exp, add = 4 ops per input element + 1 log per output element."""
    n, out_shape = math.prod(in_shape), reduced(in_shape, dims, keepdim)
    return Cost("logsumexp", in_shape, out_shape, macs=4 * n + math.prod(out_shape), input_elements=n)


RNN_GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
# Cell ops per hidden unit and step besides the products: LSTM 3 sigmoids + 2 tanh + c = f c + i g (3) + h = o tanh c
# (1) = 9; GRU 2 sigmoids + tanh + r (W h + b) (1) + n + ... (1) + h = (1 - z) n + z h (3) = 8; tanh / ReLU RNN 1.
RNN_CELL_OPS = {"lstm": 9, "gru": 8, "rnn_tanh": 1, "rnn_relu": 1}


@formula("rnn", category="other")
def rnn(in_shape: Shape, hidden: int, mode: str = "lstm", layers: int = 1, bidirectional: bool = False,
        bias: bool = True, proj: int = 0) -> Cost:
    """LSTM/GRU/RNN on (T, N, I), per step, layer, direction: gates H (in + H_out) (+ H proj) MACs, 2 gates H bias adds."""
    if mode not in RNN_GATES:
        raise CnnCostError(f"rnn mode must be one of {', '.join(RNN_GATES)}, got {mode!r}")
    steps, batch, features = in_shape if len(in_shape) == 3 else (in_shape[0], 1, in_shape[-1])
    directions, out_width, gates = 1 + bool(bidirectional), proj or hidden, RNN_GATES[mode] * hidden
    macs = width = 0
    for layer in range(layers):
        width = features if layer == 0 else out_width * directions
        macs += directions * steps * batch * (gates * (width + out_width) + (hidden * proj if proj else 0))
    out_shape = (*in_shape[:-1], out_width * directions)
    runs = layers * directions * steps * batch
    products = Cost("linear", in_shape, out_shape, macs=macs, bias_adds=2 * runs * gates if bias else 0,
                    input_elements=math.prod(in_shape))
    cell = Cost(f"{mode}_cell", in_shape, out_shape, macs=runs * hidden * RNN_CELL_OPS[mode],
                input_elements=runs * gates, category="activation")
    return Cost("rnn", in_shape, out_shape, macs=products.macs + cell.macs, bias_adds=products.bias_adds,
                input_elements=products.input_elements, parts=(("", products), ("cell", cell)))


@formula("bilinear", category="linear")
def bilinear(in_shape: Shape, in2_features: int, out_features: int, bias: bool = True) -> Cost:
    """nn.Bilinear y_k = x1^T A_k x2 + b_k: MACs = rows x out x in1 x in2; params = out in1 in2 (+ out bias)."""
    rows, in1 = math.prod(in_shape[:-1]), in_shape[-1]
    out_shape = (*in_shape[:-1], out_features)
    return Cost("bilinear", in_shape, out_shape, macs=rows * out_features * in1 * in2_features,
                bias_adds=rows * out_features if bias else 0,
                params=out_features * in1 * in2_features + (out_features if bias else 0),
                input_elements=rows * (in1 + in2_features))


@formula("trilinear", category="linear")
def trilinear(in_shape: Shape, joint: Sequence[int], out_shape: Sequence[int]) -> Cost:
    """aten._trilinear (nn.Bilinear's forward and gradients): 1 MAC per point of its three operands' joint space."""
    return Cost("trilinear", in_shape, tuple(out_shape), macs=math.prod(joint),
                input_elements=math.prod(in_shape))


@formula("affine_grid", category="other")
def affine_grid(in_shape: Shape, size: Sequence[int]) -> Cost:
    """F.affine_grid from theta (N, r, r+1): each of the N x prod(spatial) points is theta (x, 1): r (r+1) MACs."""
    rank = len(size) - 2
    points = size[0] * math.prod(size[2:])
    return Cost("affine_grid", in_shape, (size[0], *size[2:], rank), macs=points * rank * (rank + 1),
                input_elements=math.prod(in_shape))


@formula("cdist", category="other")
def cdist(in_shape: Shape, other: Shape) -> Cost:
    """torch.cdist of x1 (..., P, M), x2 (..., R, M): subtract, |.|^p, add = 3 ops per pair and feature + 1 root."""
    other = check_shape(other)
    pairs = math.prod(in_shape[:-1]) * other[-2]
    return Cost("cdist", in_shape, (*in_shape[:-1], other[-2]), macs=pairs * (3 * in_shape[-1] + 1),
                input_elements=math.prod(in_shape) + math.prod(other))


@formula("fft", category="other")
def fft(in_shape: Shape, dims: Sequence[int] = (-1,), out_shape: Sequence[int] | None = None) -> Cost:
    """FFT over dims of n_d points each: 1 butterfly op per element per stage = prod(shape) x sum ceil(log2 n_d)."""
    stages = sum(max(1, math.ceil(math.log2(in_shape[d]))) for d in dims)
    return Cost("fft", in_shape, tuple(out_shape or in_shape), macs=math.prod(in_shape) * stages,
                input_elements=math.prod(in_shape))




# -- backward ops of a training step --------------------------------------------------------------------
# A backward op's Cost has parts named grad_input, grad_weight and grad_bias (those its output mask asks for);
# its in_shape is the forward input's shape, so the forward formula's arithmetic is reused as is.

GRAD_PARTS = ("grad_input", "grad_weight", "grad_bias")


def gradient(kind: str, category: str, grad_out: Shape, produced: Shape, macs: int = 0, adds: int = 0,
             read: int = 0) -> Cost:
    """One gradient a backward op produces: its MACs (or bias adds), reading dY and `read` more elements."""
    return Cost(kind, grad_out, produced, macs=macs, bias_adds=adds, input_elements=math.prod(grad_out) + read,
                category=category)


def backward(kind: str, category: str, in_shape: Shape, parts: Sequence[tuple[str, Cost]]) -> Cost:
    """A backward op as the sum of the gradients it produces (parts), on the forward input's shape."""
    return Cost(kind, in_shape, in_shape, macs=sum(p.macs for _, p in parts),
                bias_adds=sum(p.bias_adds for _, p in parts), input_elements=sum(p.input_elements for _, p in parts),
                category=category, parts=tuple(parts))


def masked(output_mask: Sequence[bool], parts: dict[str, Cost]) -> list[tuple[str, Cost]]:
    """The parts an aten output mask (grad_input, grad_weight, grad_bias) asks for."""
    return [(name, parts[name]) for name, wanted in zip(GRAD_PARTS, output_mask) if wanted and name in parts]


@formula("conv_backward", category="conv")
def conv_backward(in_shape: Shape, forward: str = "conv2d", output_mask: Sequence[bool] = (True, True, False),
                  **conv) -> Cost:
    """A conv's backward: grad-input dX = dY W^T and grad-weight dW = X^T dY, F MACs each; grad-bias 1 add/output."""
    f = cost(forward, in_shape, **{**conv, "bias": False})
    weight = f.params  # the forward's weights: what dW writes and dX reads
    parts = {"grad_input": gradient(f"{forward}_grad_input", "conv", f.out_shape, in_shape, macs=f.macs, read=weight),
             "grad_weight": gradient(f"{forward}_grad_weight", "conv", f.out_shape, (weight,), macs=f.macs,
                                     read=math.prod(in_shape)),
             "grad_bias": gradient(f"{forward}_grad_bias", "conv", f.out_shape, (f.out_shape[1],),
                                   adds=f.activations)}
    return backward(f"{forward}_backward", "conv", in_shape, masked(output_mask, parts))


@formula("norm_backward", category="norm")
def norm_backward(in_shape: Shape, output_mask: Sequence[bool] = (True, True, True), norm: str = "batchnorm2d",
                  params: Sequence[int] | None = None) -> Cost:
    """Batch/layer/group norm backward per element: sum dY (grad-bias, 1 add), sum dY x^ (grad-weight, 1), dX (2)."""
    n, affine = math.prod(in_shape), tuple(params) if params else (in_shape[1],)
    sums = {"grad_weight": gradient(f"{norm}_grad_weight", "norm", in_shape, affine, macs=n, read=n),
            "grad_bias": gradient(f"{norm}_grad_bias", "norm", in_shape, affine, adds=n)}
    unasked = sum(p.macs + p.bias_adds for name, p in sums.items() if name not in dict(masked(output_mask, sums)))
    parts = {"grad_input": gradient(f"{norm}_grad_input", "norm", in_shape, in_shape, macs=2 * n + unasked,
                                    read=n), **sums}
    return backward(f"{norm}_backward", "norm", in_shape, masked(output_mask, parts))


@formula("activation_backward", category="activation")
def activation_backward(in_shape: Shape, activation: str = "relu") -> Cost:
    """Activation backward dX = dY * f'(x): 1 op per element (f'(x) from the saved input or output)."""
    n = math.prod(in_shape)
    grad = gradient(f"{activation}_grad_input", "activation", in_shape, in_shape, macs=n, read=n)
    return backward(f"{activation}_backward", "activation", in_shape, [("grad_input", grad)])


@formula("pool_backward", category="pool")
def pool_backward(in_shape: Shape, forward: str = "maxpool2d", **pool) -> Cost:
    """Pool backward: max adds each output's gradient at its argmax (1/output); average spreads it (= forward ops)."""
    f = cost(forward, in_shape, **pool)
    macs = f.activations if "max" in forward else f.macs
    grad = gradient(f"{forward}_grad_input", "pool", f.out_shape, in_shape, macs=macs)
    return backward(f"{forward}_backward", "pool", in_shape, [("grad_input", grad)])


@formula("dropout_backward", category="other")
def dropout_backward(in_shape: Shape) -> Cost:
    """Dropout backward dX = dY * mask * scale: 1 op per element."""
    n = math.prod(in_shape)
    grad = gradient("dropout_grad_input", "other", in_shape, in_shape, macs=n, read=n)
    return backward("dropout_backward", "other", in_shape, [("grad_input", grad)])


@formula("softmax_backward", "log_softmax_backward", category="activation")
def softmax_backward(in_shape: Shape, log: bool = False) -> Cost:
    """(Log-)softmax backward: s = sum(dY [* y]) per row, dX = dY - exp(y) s (or y (dY - s)): 2 ops per element."""
    n, kind = math.prod(in_shape), "log_softmax" if log else "softmax"
    grad = gradient(f"{kind}_grad_input", "activation", in_shape, in_shape, macs=2 * n, read=n)
    return backward(f"{kind}_backward", "activation", in_shape, [("grad_input", grad)])


@formula("nll_loss", category="other")
def nll_loss(in_shape: Shape) -> Cost:
    """NLL loss (cross-entropy after log-softmax): -log p at each row's target, averaged: 1 add per row."""
    rows = math.prod(in_shape[:-1]) if len(in_shape) > 1 else 1
    return Cost("nll_loss", in_shape, (1,), macs=rows, input_elements=rows)


@formula("nll_loss_backward", category="other")
def nll_loss_backward(in_shape: Shape) -> Cost:
    """NLL loss backward: -dL / N written at each row's target, 1 op per row (the rest of dX is zeros)."""
    rows = math.prod(in_shape[:-1]) if len(in_shape) > 1 else 1
    grad = gradient("nll_loss_grad_input", "other", (1,), in_shape, macs=rows, read=rows)
    return backward("nll_loss_backward", "other", in_shape, [("grad_input", grad)])


@formula("nll_loss2d", category="other")
def nll_loss2d(in_shape: Shape) -> Cost:
    """Per-pixel NLL loss on N x C x H x W log-probabilities: 1 add per pixel (N H W), as nll_loss with C last."""
    return nll_loss((in_shape[0], *in_shape[2:], in_shape[1]))


@formula("nll_loss2d_backward", category="other")
def nll_loss2d_backward(in_shape: Shape) -> Cost:
    """Per-pixel NLL loss backward: -dL / (N H W) written at each pixel's target, 1 op per pixel."""
    return nll_loss_backward((in_shape[0], *in_shape[2:], in_shape[1]))


@formula("upsample_backward", category="pool")
def upsample_backward(in_shape: Shape, forward: str = "upsample_nearest", **resample) -> Cost:
    """Interpolation backward: each output's gradient added to its taps with their weights: the forward's MACs."""
    f = cost(forward, in_shape, **resample)
    grad = gradient(f"{forward}_grad_input", "pool", f.out_shape, in_shape, macs=f.macs)
    return backward(f"{forward}_backward", "pool", in_shape, [("grad_input", grad)])


@formula("grid_sample_backward", category="pool")
def grid_sample_backward(in_shape: Shape, grid: Shape, mode: str = "bilinear",
                         output_mask: Sequence[bool] = (True, True)) -> Cost:
    """Grid sampling backward: dX adds each output's gradient to its taps, dGrid weighs the taps: forward MACs each."""
    f = grid_sample(in_shape, grid, mode)
    parts = [gradient("grid_sample_grad_input", "pool", f.out_shape, in_shape, macs=f.macs),
             gradient("grid_sample_grad_grid", "pool", f.out_shape, grid, macs=f.macs, read=math.prod(in_shape))]
    return backward("grid_sample_backward", "pool", in_shape,
                    [("grad_input", p) for p, wanted in zip(parts, output_mask) if wanted])


@formula("embedding_backward", category="other")
def embedding_backward(in_shape: Shape, num_weights: int, embedding_dim: int) -> Cost:
    """Embedding backward: dW[i] += dY row of each index i (scatter-add): 1 add per gathered element (indices x dim)."""
    gathered = math.prod(in_shape) * embedding_dim
    grad = gradient("embedding_grad_weight", "other", (*in_shape, embedding_dim), (num_weights, embedding_dim),
                    macs=gathered, read=math.prod(in_shape))
    return backward("embedding_backward", "other", in_shape, [("grad_weight", grad)])


@formula("prelu_backward", category="activation")
def prelu_backward(in_shape: Shape, num_parameters: int = 1) -> Cost:
    """PReLU backward: dX = dY (x > 0 ? 1 : a), 1 op/element; dA's terms dY x where x < 0, 1 op/element (summed after)."""
    n = math.prod(in_shape)
    parts = [("grad_input", gradient("prelu_grad_input", "activation", in_shape, in_shape, macs=n, read=n)),
             ("grad_weight", gradient("prelu_grad_weight", "activation", in_shape, in_shape, macs=n, read=n))]
    return backward("prelu_backward", "activation", in_shape, parts)


SOFTMAX_BACKWARD_OPS = 4  # per score: P recomputed from the log-sum-exp (scale, exp), dS = P (dP - D) (2)


@formula("attention_backward", category="other")
def attention_backward(in_shape: Shape, key: Shape, value: Shape, mask: Shape | None = None) -> Cost:
    """Fused attention backward: S = Q K^T again, dP = dO V^T, dV = P^T dO, dQ = dS K, dK = dS^T Q + 4 ops/score."""
    key, value = check_shape(key), check_shape(value)
    f = attention(in_shape, key, value)  # Q K^T (L S E) + P V (L S Ev)
    (length, width), source, value_width = in_shape[-2:], key[-2], value[-1]
    heads = math.prod(in_shape[:-2])
    scores = (*in_shape[:-1], source)
    products = Cost("attention_grad", in_shape, in_shape, macs=heads * length * source * (3 * width + 2 * value_width),
                    input_elements=f.input_elements + 2 * math.prod(f.out_shape), category="linear")
    softmax_part = gradient("attention_softmax_grad", "activation", scores, scores,
                            macs=SOFTMAX_BACKWARD_OPS * math.prod(scores))
    return backward("attention_backward", "other", in_shape, [("grad_input", products), ("grad_input", softmax_part)])




