"""Aten handlers for convolution, normalization, pooling and resampling (registered into trace.ops.OPS)."""
from __future__ import annotations


from cnncost.trace.ops import Layer, handles, ints, shape


# -- convolution ---------------------------------------------------------------------------


@handles("convolution", "_convolution")
def conv(args: tuple, out) -> Layer | None:
    """aten.convolution(x, w, b, stride, padding, dilation, transposed, output_padding, groups): 2-d only."""
    x, w, b, stride, padding, dilation, transposed, _, groups = args[:9]
    if transposed or x.dim() != 4:
        return None
    return "conv2d", shape(x), dict(out_channels=w.shape[0], kernel=tuple(w.shape[2:]), stride=ints(stride),
                                    padding=ints(padding), dilation=ints(dilation), groups=groups,
                                    bias=b is not None)


# -- normalization -----------------------------------------------------------------------


@handles("native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training", "batch_norm",
         "cudnn_batch_norm", "miopen_batch_norm")
def batch_norm(args: tuple, out) -> Layer:
    """Any batch norm variant (x, weight, bias, running_mean, running_var, ...)."""
    return "batchnorm2d", shape(args[0]), {"affine": args[1] is not None}



# -- pooling -------------------------------------------------------------------------------------------------


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
