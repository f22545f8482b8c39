"""Aten handlers for the backward ops of a training step (conv, norms, activations, pools, dropout, loss), and
the loss, a forward op that only training runs.

Each returns the forward layer's input shape and hyper-parameters under a ``*_backward`` kind, so the backward
formulas reuse the forward arithmetic. The matrix products of linear's backward are plain ``mm`` ops (ops_math);
the training tracer tells their grad-input from their grad-weight.
"""
from __future__ import annotations

from cnncost.trace.ops import Handler, Layer, handles, ints, shape
from cnncost.trace.ops_nn import adaptive_pool, avg_pool, conv, max_pool


@handles("convolution_backward")
def conv_backward(args: tuple, out) -> Layer | None:
    """convolution_backward(dY, x, w, bias_sizes, stride, padding, dilation, transposed, output_padding, groups,
    output_mask): the forward conv (any rank, transposed too) as ops_nn reads it, and the gradients asked for."""
    _, x, w, bias_sizes, stride, padding, dilation, transposed, output_padding, groups, mask = args[:11]
    layer = conv((x, w, bias_sizes, stride, padding, dilation, transposed, output_padding, groups), None)
    if layer is None:
        return None
    kind, in_shape, hyper = layer
    hyper.pop("bias", None)
    return "conv_backward", in_shape, {"forward": kind, "output_mask": tuple(mask), **hyper}


@handles("native_batch_norm_backward", "cudnn_batch_norm_backward", "miopen_batch_norm_backward")
def batch_norm_backward(args: tuple, out) -> Layer:
    """native_batch_norm_backward(dY, x, weight, running_mean, running_var, save_mean, save_invstd, train, eps,
    output_mask)."""
    mask = args[9] if len(args) > 9 else (True, args[2] is not None, args[2] is not None)
    return "norm_backward", shape(args[1]), {"output_mask": tuple(mask), "norm": f"batchnorm{args[1].dim() - 2}d"}


@handles("native_layer_norm_backward")
def layer_norm_backward(args: tuple, out) -> Layer:
    """native_layer_norm_backward(dY, x, normalized_shape, mean, rstd, weight, bias, output_mask)."""
    return "norm_backward", shape(args[1]), {"output_mask": tuple(args[7]), "norm": "layer_norm",
                                             "params": tuple(args[2])}


@handles("native_group_norm_backward")
def group_norm_backward(args: tuple, out) -> Layer:
    """native_group_norm_backward(dY, x, mean, rstd, weight, N, C, HxW, group, output_mask)."""
    return "norm_backward", shape(args[1]), {"output_mask": tuple(args[9]), "norm": "group_norm"}


def scattered(args: tuple, out) -> Layer:
    """<view>_backward(dY, input_sizes, ...): dY written into zeros of the input's shape, no arithmetic."""
    return "data_movement", shape(args[0]), {"out_shape": tuple(out.shape)}


handles("select_backward", "slice_backward", "diagonal_backward", "unfold_backward")(scattered)


def activation_backward(activation: str) -> Handler:
    """<act>_backward(dY, x or y, ...): one op per element."""
    return lambda args, out: ("activation_backward", shape(args[1]), {"activation": activation})


for _name in ("silu", "sigmoid", "gelu", "hardswish", "hardsigmoid", "tanh", "elu", "leaky_relu", "softplus",
              "mish", "log_sigmoid"):
    handles(f"{_name}_backward")(activation_backward(_name))


@handles("threshold_backward")
def threshold_backward(args: tuple, out) -> Layer:
    """threshold_backward(dY, x, threshold): ReLU's backward (threshold 0)."""
    name = "relu" if float(args[2]) == 0.0 else "threshold"
    return "activation_backward", shape(args[1]), {"activation": name}


@handles("hardtanh_backward")
def hardtanh_backward(args: tuple, out) -> Layer:
    """hardtanh_backward(dY, x, min, max): ReLU6's backward for bounds (0, 6)."""
    name = "relu6" if (float(args[2]), float(args[3])) == (0.0, 6.0) else "hardtanh"
    return "activation_backward", shape(args[1]), {"activation": name}


def pool_backward(forward: Handler, rank: int, reduce: str = "") -> Handler:
    """<pool>_backward(dY, x, <the forward's arguments>...): the forward pool as ops_nn reads it (adaptive pools:
    the output size is dY's)."""
    def handler(args: tuple, out) -> Layer:
        grad, x, rest = args[0], args[1], args[2:]
        if reduce:
            layer = forward((x, tuple(grad.shape[2:])), None, rank=rank, reduce=reduce)
        else:
            layer = forward((x, *rest), None, rank=rank)
        kind, in_shape, hyper = layer
        return "pool_backward", in_shape, {"forward": kind, **hyper}
    return handler


for _rank in (1, 2, 3):
    handles(f"max_pool{_rank}d_with_indices_backward")(pool_backward(max_pool, _rank))
    handles(f"avg_pool{_rank}d_backward")(pool_backward(avg_pool, _rank))
    handles(f"_adaptive_avg_pool{_rank}d_backward", f"adaptive_avg_pool{_rank}d_backward")(
        pool_backward(adaptive_pool, _rank, "avg"))
    handles(f"adaptive_max_pool{_rank}d_backward")(pool_backward(adaptive_pool, _rank, "max"))


@handles("native_dropout_backward")
def dropout_backward(args: tuple, out) -> Layer:
    """native_dropout_backward(dY, mask, scale)."""
    return "dropout_backward", shape(args[0]), {}


def softmax_backward(log: bool) -> Handler:
    """_(log_)softmax_backward_data(dY, y, dim, input_dtype): 2 ops per element."""
    return lambda args, out: ("log_softmax_backward" if log else "softmax_backward", shape(args[0]), {"log": log})


handles("_log_softmax_backward_data")(softmax_backward(True))
handles("_softmax_backward_data")(softmax_backward(False))


@handles("nll_loss_forward")
def nll_loss(args: tuple, out) -> Layer:
    """nll_loss_forward(log_probs, target, weight, reduction, ignore_index): the loss of a training step."""
    return "nll_loss", shape(args[0]), {}


@handles("nll_loss_backward")
def nll_loss_backward(args: tuple, out) -> Layer:
    """nll_loss_backward(dL, log_probs, target, weight, reduction, ignore_index, total_weight)."""
    return "nll_loss_backward", shape(args[1]), {}
