"""Aten handlers for convolution, normalization, pooling and resampling (registered into trace.ops.OPS).

Ops of every spatial rank share one handler each; the rank (and pooling/interpolation mode) comes from the op
name, fixed at registration, because an op may see an unbatched input (max_pool2d on C x H x W).
"""
from __future__ import annotations

from functools import partial

import torch.nn.functional as F

from cnncost.formulas import batch_norm_kind
from cnncost.trace.ops import Layer, handles, handles_function, ints, shape
from cnncost.trace.ops_math import mean_reduction

RANKS = (1, 2, 3)


def for_ranks(names: str, handler, **fixed) -> None:
    """Register handler for the ops names.format(rank) (space-separated templates), rank fixed, for ranks 1-3."""
    for rank in RANKS:
        handles(*names.format(rank).split())(partial(handler, rank=rank, **fixed))


# -- convolution ---------------------------------------------------------------------------


@handles("convolution", "_convolution", "convolution_overrideable")
def conv(args: tuple, out) -> Layer | None:
    """aten.convolution(x, w, b, stride, padding, dilation, transposed, output_padding, groups), any rank."""
    x, w, b, stride, padding, dilation, transposed, output_padding, groups = args[:9]
    rank = x.dim() - 2
    if rank not in RANKS or not isinstance(transposed, bool):
        return None
    out_channels = w.shape[1] * groups if transposed else w.shape[0]
    kind = f"conv_transpose{rank}d" if transposed else f"conv{rank}d"
    return kind, shape(x), dict(out_channels=out_channels, kernel=tuple(w.shape[2:]), stride=ints(stride),
                                padding=ints(padding), dilation=ints(dilation), groups=groups, bias=b is not None,
                                **({"output_padding": ints(output_padding)} if transposed else {}))


# -- normalization -----------------------------------------------------------------------


def batch_norm_layer(x, weight, running_mean, batch_stats: bool) -> Layer:
    """A batch norm of the input's rank: folded with running statistics, else computing the batch's."""
    return batch_norm_kind(x.dim()), shape(x), {"affine": weight is not None, "batch_stats": bool(batch_stats),
                                                "running_stats": running_mean is not None}


@handles("native_batch_norm", "batch_norm", "cudnn_batch_norm", "miopen_batch_norm")
def batch_norm(args: tuple, out) -> Layer:
    """(x, weight, bias, running_mean, running_var, training, ...): training (or no running stats) = batch stats."""
    x, weight, _, running_mean, _, training = args[:6]
    return batch_norm_layer(x, weight, running_mean, training or running_mean is None)


@handles("_native_batch_norm_legit")
def batch_norm_legit(args: tuple, out) -> Layer:
    """(x, weight, bias, running_mean, running_var, training, ...), or .no_stats (x, weight, bias, training, ...)."""
    x, weight = args[:2]
    if isinstance(args[3], bool):  # no_stats overload
        return batch_norm_layer(x, weight, None, True)
    return batch_norm_layer(x, weight, args[3], args[5] or args[3] is None)


@handles("_native_batch_norm_legit_no_training", "_batch_norm_no_update")
def batch_norm_eval(args: tuple, out) -> Layer:
    """(x, weight, bias, running_mean, running_var, momentum, eps): inference with running statistics."""
    return batch_norm_layer(args[0], args[1], args[3], args[3] is None)


@handles("_batch_norm_with_update")
def batch_norm_train(args: tuple, out) -> Layer:
    """(x, weight, bias, running_mean, running_var, momentum, eps): training, batch statistics."""
    return batch_norm_layer(args[0], args[1], args[3], True)


@handles("instance_norm")
def instance_norm(args: tuple, out) -> Layer:
    """instance_norm(x, weight, bias, running_mean, running_var, use_input_stats, ...) when it is not decomposed."""
    x, weight, _, running_mean, _, use_input_stats = args[:6]
    return "instance_norm", shape(x), {"affine": weight is not None,
                                       "running_stats": running_mean is not None and not use_input_stats}


@handles_function(F.instance_norm)
def instance_norm_function(a: dict, out) -> Layer:
    """F.instance_norm(input, running_mean, running_var, weight, bias, use_input_stats, ...): one row, any device."""
    return "instance_norm", shape(a["input"]), {"affine": a["weight"] is not None,
                                                "running_stats": a["running_mean"] is not None
                                                and not a["use_input_stats"]}


@handles_function(F.local_response_norm)
def local_response_norm(a: dict, out) -> Layer:
    """F.local_response_norm(input, size, alpha, beta, k): one row, whatever ops it runs as."""
    return "lrn", shape(a["input"]), {"size": a["size"], "alpha": a["alpha"], "beta": a["beta"], "k": a["k"]}


@handles("native_layer_norm", "layer_norm")
def layer_norm(args: tuple, out) -> Layer:
    """layer_norm(x, normalized_shape, weight, bias, eps)."""
    x, normalized_shape, weight, bias = args[:4]
    return "layer_norm", shape(x), {"normalized_shape": tuple(normalized_shape), "affine": weight is not None,
                                    "bias": bias is not None}


@handles("native_group_norm")
def native_group_norm(args: tuple, out) -> Layer:
    """native_group_norm(x, weight, bias, N, C, HxW, group, eps)."""
    return "group_norm", shape(args[0]), {"groups": args[6], "affine": args[1] is not None}


@handles("group_norm")
def group_norm(args: tuple, out) -> Layer:
    """group_norm(x, num_groups, weight, bias, eps, cudnn_enabled)."""
    return "group_norm", shape(args[0]), {"groups": args[1], "affine": args[2] is not None}


# -- pooling -------------------------------------------------------------------------------------------------


def window(kernel, stride, padding) -> dict:
    """kernel, stride (None when empty: the kernel) and padding of a pooling op."""
    return dict(kernel=ints(kernel), stride=ints(stride) if stride else None, padding=ints(padding))


def max_pool(args: tuple, out, rank: int) -> Layer:
    """max_pool{rank}d[_with_indices](x, kernel, stride=[], padding=0, dilation=1, ceil_mode=False)."""
    x, kernel, stride, padding, dilation, ceil_mode = args[:6]
    return f"maxpool{rank}d", shape(x), dict(window(kernel, stride, padding), dilation=ints(dilation),
                                             ceil_mode=bool(ceil_mode))


def avg_pool(args: tuple, out, rank: int) -> Layer:
    """avg_pool{rank}d(x, kernel, stride=[], padding=0, ceil_mode=False, count_include_pad, ...)."""
    x, kernel, stride, padding, ceil_mode = args[:5]
    return f"avgpool{rank}d", shape(x), dict(window(kernel, stride, padding), ceil_mode=bool(ceil_mode))


def adaptive_pool(args: tuple, out, rank: int, reduce: str) -> Layer:
    """adaptive_{avg,max}_pool{rank}d(x, output_size)."""
    return f"adaptive_{reduce}pool{rank}d", shape(args[0]), {"output_size": ints(args[1])}


for_ranks("max_pool{0}d max_pool{0}d_with_indices", max_pool)
for_ranks("avg_pool{0}d", avg_pool)
for_ranks("adaptive_avg_pool{0}d _adaptive_avg_pool{0}d", adaptive_pool, reduce="avg")
for_ranks("adaptive_max_pool{0}d", adaptive_pool, reduce="max")


def adaptive_avg_pool_function(a: dict, out, rank: int) -> Layer:
    """F.adaptive_avg_pool2d/3d(input, output_size) (nn.AdaptiveAvgPool2d/3d's too) as one row named for the
    function: a global pool runs as aten.mean, like x.mean((2, 3)), and fvcore and ptflops count only the pool."""
    return f"adaptive_avgpool{rank}d", shape(a["input"]), {"output_size": ints(a["output_size"])}


handles_function(F.adaptive_avg_pool2d)(partial(adaptive_avg_pool_function, rank=2))
handles_function(F.adaptive_avg_pool3d)(partial(adaptive_avg_pool_function, rank=3))


@handles("mean")
def mean(args: tuple, out) -> Layer | None:
    """mean over every spatial dim of an NCHW / NCDHW tensor is a global average pool (adaptive_avg_pool(1))."""
    x, dims = args[0], args[1] if len(args) > 1 else None
    rank = x.dim() - 2
    spatial = list(range(2, x.dim()))
    if rank in (2, 3) and isinstance(dims, (list, tuple)) and sorted(d % x.dim() for d in dims) == spatial:
        return f"adaptive_avgpool{rank}d", shape(x), {"output_size": 1, "keepdim": len(args) > 2 and args[2] is True}
    return mean_reduction(args, out)  # any other mean is a reduction


# -- resampling ----------------------------------------------------------------------------------------------


def interpolate(args: tuple, out, mode: str, align: bool) -> Layer:
    """upsample_<mode>(x, output_size, [align_corners], scales...) and .vec: the output size read from out."""
    kind = "upsample_" + mode.replace("-", "_")
    return kind, shape(args[0]), {"size": tuple(out.shape[2:]),
                                  "align_corners": bool(args[2]) if align else None}


handles(*(f"upsample_nearest{r}d" for r in RANKS))(partial(interpolate, mode="nearest", align=False))
handles(*(f"_upsample_nearest_exact{r}d" for r in RANKS))(partial(interpolate, mode="nearest-exact", align=False))
handles("upsample_linear1d")(partial(interpolate, mode="linear", align=True))
handles("upsample_bilinear2d")(partial(interpolate, mode="bilinear", align=True))
handles("upsample_bicubic2d")(partial(interpolate, mode="bicubic", align=True))
handles("upsample_trilinear3d")(partial(interpolate, mode="trilinear", align=True))
# antialias=True: costed by the taps of its mode, as their backward (ops_backward) is
handles("_upsample_bilinear2d_aa")(partial(interpolate, mode="bilinear", align=True))
handles("_upsample_bicubic2d_aa")(partial(interpolate, mode="bicubic", align=True))


@handles("affine_grid_generator")
def affine_grid(args: tuple, out) -> Layer:
    """affine_grid_generator(theta (N, r, r+1), size (N, C, *spatial), align_corners)."""
    return "affine_grid", shape(args[0]), {"size": tuple(args[1])}

GRID_MODES = ("bilinear", "nearest", "bicubic")  # grid_sampler's interpolation_mode 0, 1, 2


@handles("grid_sampler", "grid_sampler_2d", "grid_sampler_3d")
def grid_sampler(args: tuple, out) -> Layer:
    """grid_sampler_{2,3}d(input, grid, interpolation_mode, padding_mode, align_corners)."""
    return "grid_sample", shape(args[0]), {"grid": shape(args[1]), "mode": GRID_MODES[args[2]]}


@handles("roi_align")
def roi_align(args: tuple, out) -> Layer | None:
    """torchvision.roi_align(input, rois (K x 5), spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned): the
    boxes are read only for an adaptive sampling ratio, which needs real (not meta) tensors."""
    x, rois, spatial_scale, height, width, sampling_ratio, aligned = args[:7]
    hyper = dict(output_size=(height, width), spatial_scale=spatial_scale, sampling_ratio=sampling_ratio,
                 aligned=aligned)
    if sampling_ratio > 0:
        return "roi_align", shape(x), dict(hyper, rois=rois.shape[0])
    if rois.is_meta:
        return None
    return "roi_align", shape(x), dict(hyper, boxes=rois[:, 1:].tolist())
