"""Aten handlers for convolution, normalization, pooling and resampling.

Ops of every spatial rank share one handler each; the rank (and pooling/interpolation mode) comes from the op
name, fixed at registration, because an op may see an unbatched input (max_pool2d on C x H x W).
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

from cnncost.formulas import RESAMPLING, batch_norm_kind
from cnncost.trace.ops.common import GRID_MODES, RANKS, ints, shape
from cnncost.trace.ops.registry import Layer, function_as_op, handles, handles_function


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
    return Layer(kind, shape(x), dict(out_channels=out_channels, kernel=tuple(w.shape[2:]), stride=ints(stride),
                                      padding=ints(padding), dilation=ints(dilation), groups=groups,
                                      bias=b is not None,
                                      **({"output_padding": ints(output_padding)} if transposed else {})))


# -- normalization -----------------------------------------------------------------------


def batch_norm_layer(x, weight, running_mean, batch_stats: bool) -> Layer:
    """A batch norm of the input's rank: folded with running statistics, else computing the batch's."""
    return Layer(batch_norm_kind(x.dim()), shape(x), {"affine": weight is not None, "batch_stats": bool(batch_stats),
                                                      "running_stats": running_mean is not None})


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
    return Layer("instance_norm", shape(x), {"affine": weight is not None,
                                             "running_stats": running_mean is not None and not use_input_stats})


function_as_op(F.instance_norm, "instance_norm")  # one row on every device (it runs as batch norm on a view)


@handles_function(F.local_response_norm)
def local_response_norm(a: dict, out) -> Layer:
    """F.local_response_norm(input, size, alpha, beta, k): one row, whatever ops it runs as."""
    return Layer("lrn", shape(a["input"]), {"size": a["size"], "alpha": a["alpha"], "beta": a["beta"], "k": a["k"]})


@handles("native_layer_norm", "layer_norm")
def layer_norm(args: tuple, out) -> Layer:
    """layer_norm(x, normalized_shape, weight, bias, eps)."""
    x, normalized_shape, weight, bias = args[:4]
    return Layer("layer_norm", shape(x), {"normalized_shape": tuple(normalized_shape), "affine": weight is not None,
                                          "bias": bias is not None})


@handles("native_group_norm")
def native_group_norm(args: tuple, out) -> Layer:
    """native_group_norm(x, weight, bias, N, C, HxW, group, eps)."""
    return Layer("group_norm", shape(args[0]), {"groups": args[6], "affine": args[1] is not None})


@handles("group_norm")
def group_norm(args: tuple, out) -> Layer:
    """group_norm(x, num_groups, weight, bias, eps, cudnn_enabled)."""
    return Layer("group_norm", shape(args[0]), {"groups": args[1], "affine": args[2] is not None})


# -- pooling -------------------------------------------------------------------------------------------------


def window(kernel, stride, padding) -> dict:
    """kernel, stride (None when empty: the kernel) and padding of a pooling op."""
    return dict(kernel=ints(kernel), stride=ints(stride) if stride else None, padding=ints(padding))


def max_pool(args: tuple, out, rank: int) -> Layer:
    """max_pool{rank}d[_with_indices](x, kernel, stride=[], padding=0, dilation=1, ceil_mode=False)."""
    x, kernel, stride, padding, dilation, ceil_mode = args[:6]
    return Layer(f"maxpool{rank}d", shape(x), dict(window(kernel, stride, padding), dilation=ints(dilation),
                                                   ceil_mode=bool(ceil_mode)))


def avg_pool(args: tuple, out, rank: int) -> Layer:
    """avg_pool{rank}d(x, kernel, stride=[], padding=0, ceil_mode=False, count_include_pad, ...)."""
    x, kernel, stride, padding, ceil_mode = args[:5]
    return Layer(f"avgpool{rank}d", shape(x), dict(window(kernel, stride, padding), ceil_mode=bool(ceil_mode)))


def adaptive_pool(args: tuple, out, rank: int, reduce: str) -> Layer:
    """adaptive_{avg,max}_pool{rank}d(x, output_size)."""
    return Layer(f"adaptive_{reduce}pool{rank}d", shape(args[0]), {"output_size": ints(args[1])})


for_ranks("max_pool{0}d max_pool{0}d_with_indices", max_pool)
for_ranks("avg_pool{0}d", avg_pool)
for_ranks("adaptive_avg_pool{0}d _adaptive_avg_pool{0}d", adaptive_pool, reduce="avg")
for_ranks("adaptive_max_pool{0}d", adaptive_pool, reduce="max")
# F.adaptive_avg_pool2d/3d (nn.AdaptiveAvgPool2d/3d's too) as one row named for the function: a global pool runs
# as aten.mean, like x.mean((2, 3)), and fvcore and ptflops count only the pool.
function_as_op(F.adaptive_avg_pool2d, "adaptive_avg_pool2d")
function_as_op(F.adaptive_avg_pool3d, "adaptive_avg_pool3d")
# 1-d pools run as their 2-d aten op on an N x C x 1 x L view: booked at the function, as 1-d, with their own
# shapes and stride.
function_as_op(F.max_pool1d, "max_pool1d", like=F.max_pool1d_with_indices)
function_as_op(F.max_pool1d_with_indices, "max_pool1d")
function_as_op(F.adaptive_max_pool1d, "adaptive_max_pool1d", like=F.adaptive_max_pool1d_with_indices)
function_as_op(F.adaptive_max_pool1d_with_indices, "adaptive_max_pool1d")
function_as_op(torch.avg_pool1d, "avg_pool1d")
function_as_op(torch.adaptive_avg_pool1d, "adaptive_avg_pool1d")


# -- resampling ----------------------------------------------------------------------------------------------


def interpolate(args: tuple, out, mode: str) -> Layer:
    """upsample_<mode>(x, output_size, [align_corners], scales...) and .vec: the output size read from out."""
    aligned = mode not in ("nearest", "nearest-exact")  # the nearest modes take no align_corners
    return Layer(RESAMPLING[mode].kind, shape(args[0]), {"size": tuple(out.shape[2:]),
                                                          "align_corners": bool(args[2]) if aligned else None})


for _resampling in RESAMPLING.values():
    handles(*_resampling.ops())(partial(interpolate, mode=_resampling.mode))


@handles("affine_grid_generator")
def affine_grid(args: tuple, out) -> Layer:
    """affine_grid_generator(theta (N, r, r+1), size (N, C, *spatial), align_corners)."""
    return Layer("affine_grid", shape(args[0]), {"size": tuple(args[1])})


@handles("grid_sampler", "grid_sampler_2d", "grid_sampler_3d")
def grid_sampler(args: tuple, out) -> Layer:
    """grid_sampler_{2,3}d(input, grid, interpolation_mode, padding_mode, align_corners)."""
    return Layer("grid_sample", shape(args[0]), {"grid": shape(args[1]), "mode": GRID_MODES[args[2]]})


@handles("roi_align")
def roi_align(args: tuple, out) -> Layer | None:
    """torchvision.roi_align(input, rois (K x 5), spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned): the
    boxes are read only for an adaptive sampling ratio, which needs real (not meta) tensors."""
    x, rois, spatial_scale, height, width, sampling_ratio, aligned = args[:7]
    hyper = dict(output_size=(height, width), spatial_scale=spatial_scale, sampling_ratio=sampling_ratio,
                 aligned=aligned)
    if sampling_ratio > 0:
        return Layer("roi_align", shape(x), dict(hyper, rois=rois.shape[0]))
    if rois.is_meta:
        return None
    return Layer("roi_align", shape(x), dict(hyper, boxes=rois[:, 1:].tolist()))
