"""Aten handlers for the backward ops of a training step (conv, norms, activations, pools, dropout, loss), and
the loss, a forward op that only training runs.

Each returns the forward layer's input shape and hyper-parameters under a ``*_backward`` kind, so the backward
formulas reuse the forward arithmetic; the forward layer is read by the forward op's own handler, looked up in
the registry. The matrix products of linear's backward are plain ``mm`` ops (the arith family); the training
tracer tells their grad-input from their grad-weight.
"""
from __future__ import annotations

from cnncost.formulas import RESAMPLING
from cnncost.trace.ops.common import GRID_MODES, RANKS, shape, unary
from cnncost.trace.ops.registry import Handler, Layer, forward_layer, handles


@handles("convolution_backward")
def conv_backward(args: tuple, out) -> Layer | None:
    """convolution_backward(dY, x, w, bias_sizes, stride, padding, dilation, transposed, output_padding, groups,
    output_mask): the forward conv (any rank, transposed too) as ops_nn reads it, and the gradients asked for."""
    _, x, w, bias_sizes, stride, padding, dilation, transposed, output_padding, groups, mask = args[:11]
    layer = forward_layer("convolution", (x, w, bias_sizes, stride, padding, dilation, transposed, output_padding,
                                          groups))
    if layer is None:
        return None
    hyper = {k: v for k, v in layer.hyper.items() if k != "bias"}
    return Layer("conv_backward", layer.in_shape, {"forward": layer.kind, "output_mask": tuple(mask), **hyper})


@handles("native_batch_norm_backward", "cudnn_batch_norm_backward", "miopen_batch_norm_backward")
def batch_norm_backward(args: tuple, out) -> Layer:
    """native_batch_norm_backward(dY, x, weight, running_mean, running_var, save_mean, save_invstd, train, eps,
    output_mask)."""
    mask = args[9] if len(args) > 9 else (True, args[2] is not None, args[2] is not None)
    return Layer("norm_backward", shape(args[1]), {"output_mask": tuple(mask),
                                                   "norm": f"batchnorm{args[1].dim() - 2}d"})


@handles("native_layer_norm_backward")
def layer_norm_backward(args: tuple, out) -> Layer:
    """native_layer_norm_backward(dY, x, normalized_shape, mean, rstd, weight, bias, output_mask)."""
    return Layer("norm_backward", shape(args[1]), {"output_mask": tuple(args[7]), "norm": "layer_norm",
                                             "params": tuple(args[2])})


@handles("native_group_norm_backward")
def group_norm_backward(args: tuple, out) -> Layer:
    """native_group_norm_backward(dY, x, mean, rstd, weight, N, C, HxW, group, output_mask)."""
    return Layer("norm_backward", shape(args[1]), {"output_mask": tuple(args[9]), "norm": "group_norm"})


def scattered(args: tuple, out) -> Layer:
    """<view>_backward(dY, input_sizes, ...): dY written into zeros of the input's shape, no arithmetic."""
    return Layer("data_movement", shape(args[0]), {"out_shape": tuple(out.shape)})


handles("select_backward", "slice_backward", "diagonal_backward", "unfold_backward")(scattered)


def activation_backward(activation: str) -> Handler:
    """<act>_backward(dY, x or y, ...): one op per element."""
    return lambda args, out: Layer("activation_backward", shape(args[1]), {"activation": activation})


for _name in ("silu", "sigmoid", "gelu", "hardswish", "hardsigmoid", "tanh", "elu", "leaky_relu", "softplus",
              "mish", "log_sigmoid", "hardshrink", "softshrink", "glu", "rrelu_with_noise"):
    handles(f"{_name}_backward")(activation_backward(_name))


@handles("threshold_backward")
def threshold_backward(args: tuple, out) -> Layer:
    """threshold_backward(dY, x, threshold): ReLU's backward (threshold 0)."""
    name = "relu" if float(args[2]) == 0.0 else "threshold"
    return Layer("activation_backward", shape(args[1]), {"activation": name})


@handles("hardtanh_backward")
def hardtanh_backward(args: tuple, out) -> Layer:
    """hardtanh_backward(dY, x, min, max): ReLU6's backward for bounds (0, 6)."""
    name = "relu6" if (float(args[2]), float(args[3])) == (0.0, 6.0) else "hardtanh"
    return Layer("activation_backward", shape(args[1]), {"activation": name})


def pool_backward(forward: str, adaptive: bool = False) -> Handler:
    """<pool>_backward(dY, x, <the forward's arguments>...): the forward pool as its op's handler reads it
    (adaptive pools: the output size is dY's)."""
    def handler(args: tuple, out) -> Layer:
        grad, x, rest = args[0], args[1], args[2:]
        layer = forward_layer(forward, (x, tuple(grad.shape[2:])) if adaptive else (x, *rest))
        return Layer("pool_backward", layer.in_shape, {"forward": layer.kind, **layer.hyper})
    return handler


for _rank in RANKS:
    handles(f"max_pool{_rank}d_with_indices_backward")(pool_backward(f"max_pool{_rank}d"))
    handles(f"avg_pool{_rank}d_backward")(pool_backward(f"avg_pool{_rank}d"))
    handles(f"_adaptive_avg_pool{_rank}d_backward", f"adaptive_avg_pool{_rank}d_backward")(
        pool_backward(f"adaptive_avg_pool{_rank}d", adaptive=True))
    handles(f"adaptive_max_pool{_rank}d_backward")(pool_backward(f"adaptive_max_pool{_rank}d", adaptive=True))


# Ops that only a backward runs: prod's gradient (cumprod) and abs's (sgn), 1 op per element.
for _name in ("cumprod", "sgn"):
    handles(_name)(unary(_name))


@handles("native_dropout_backward")
def dropout_backward(args: tuple, out) -> Layer:
    """native_dropout_backward(dY, mask, scale)."""
    return Layer("dropout_backward", shape(args[0]), {})


def softmax_backward(log: bool) -> Handler:
    """_(log_)softmax_backward_data(dY, y, dim, input_dtype): 2 ops per element."""
    return lambda args, out: Layer("log_softmax_backward" if log else "softmax_backward", shape(args[0]), {"log": log})


handles("_log_softmax_backward_data")(softmax_backward(True))
handles("_softmax_backward_data")(softmax_backward(False))


@handles("nll_loss_forward")
def nll_loss(args: tuple, out) -> Layer:
    """nll_loss_forward(log_probs, target, weight, reduction, ignore_index): the loss of a training step."""
    return Layer("nll_loss", shape(args[0]), {})


@handles("nll_loss_backward")
def nll_loss_backward(args: tuple, out) -> Layer:
    """nll_loss_backward(dL, log_probs, target, weight, reduction, ignore_index, total_weight)."""
    return Layer("nll_loss_backward", shape(args[1]), {})


@handles("nll_loss2d_forward")
def nll_loss2d(args: tuple, out) -> Layer:
    """nll_loss2d_forward(log_probs N x C x H x W, target N x H x W, weight, reduction, ignore_index): per pixel."""
    return Layer("nll_loss2d", shape(args[0]), {})


@handles("nll_loss2d_backward")
def nll_loss2d_backward(args: tuple, out) -> Layer:
    """nll_loss2d_backward(dL, log_probs, target, weight, reduction, ignore_index, total_weight)."""
    return Layer("nll_loss2d_backward", shape(args[1]), {})


# -- resampling, embeddings, PReLU, pads and fused attention ------------------------------------------------


def upsample_backward(kind: str) -> Handler:
    """upsample_<mode>_backward(dY, output_size, input_size, ...): the forward interpolation of input_size."""
    return lambda args, out: Layer("upsample_backward", tuple(args[2]), {"forward": kind, "size": tuple(args[1])})


for _resampling in RESAMPLING.values():
    handles(*(f"{op}_backward" for op in _resampling.ops()))(upsample_backward(_resampling.kind))


@handles("grid_sampler_2d_backward", "grid_sampler_3d_backward")
def grid_sampler_backward(args: tuple, out) -> Layer:
    """grid_sampler_{2,3}d_backward(dY, input, grid, interpolation_mode, padding_mode, align_corners, output_mask)."""
    return Layer("grid_sample_backward", shape(args[1]), {"grid": shape(args[2]), "mode": GRID_MODES[args[3]],
                                                    "output_mask": tuple(args[6])})


@handles("embedding_dense_backward")
def embedding_backward(args: tuple, out) -> Layer:
    """embedding_dense_backward(dY, indices, num_weights, padding_idx, scale_grad_by_freq)."""
    return Layer("embedding_backward", shape(args[1]), {"num_weights": int(args[2]),
                                                        "embedding_dim": dY_width(args[0])})


@handles("_embedding_bag_backward", "_embedding_bag_dense_backward")
def embedding_bag_backward(args: tuple, out) -> Layer:
    """_embedding_bag_(dense_)backward(dY (bags x dim), indices, ...): every index's row gets its bag's gradient."""
    return Layer("embedding_backward", shape(args[1]), {"num_weights": out.shape[0],
                                                        "embedding_dim": dY_width(args[0])})


def dY_width(grad) -> int:
    """An embedding's width: the last dim of its output's gradient."""
    return int(grad.shape[-1])


@handles("_prelu_kernel_backward")
def prelu_backward(args: tuple, out) -> Layer:
    """_prelu_kernel_backward(dY, x, weight) -> (dX, dA per element, summed to the slopes afterwards)."""
    return Layer("prelu_backward", shape(args[1]), {"num_parameters": args[2].numel()})


# Data movement: the gradient of a pad scattered back (reflected edges added in), no arithmetic counted.
handles(*(f"{mode}_pad{rank}d_backward" for mode in ("reflection", "replication") for rank in (1, 2, 3)))(scattered)


def fused_attention_backward(layout: str) -> Handler:
    """A fused attention backward (dO, q, k, v, ...): q, k, v as (B, H, L, E) (layout BHLE) or (B, L, H, E)."""
    def handler(args: tuple, out) -> Layer:
        q, k, v = (shape(x) if layout == "BHLE" else (x.shape[0], x.shape[2], x.shape[1], x.shape[3])
                   for x in args[1:4])
        return Layer("attention_backward", tuple(q), {"key": tuple(k), "value": tuple(v)})
    return handler


handles("_scaled_dot_product_flash_attention_for_cpu_backward", "_scaled_dot_product_flash_attention_backward",
        "_scaled_dot_product_efficient_attention_backward", "_scaled_dot_product_cudnn_attention_backward",
        "_scaled_dot_product_fused_attention_overrideable_backward")(fused_attention_backward("BHLE"))
handles("_flash_attention_backward", "_efficient_attention_backward")(fused_attention_backward("BLHE"))
