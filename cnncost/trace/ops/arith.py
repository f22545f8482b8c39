"""Aten handlers for matrix products, attention, recurrent layers, activations, elementwise ops and reductions.

Attention is booked where the user calls it: ``F.scaled_dot_product_attention`` is one function-level layer
(``FUNCTIONS``, seen by the tracer's TorchFunctionMode) whatever aten ops then run it (the math decomposition on
meta, a fused kernel on the CPU or CUDA), so it costs the same on every device. The fused kernels also have aten
handlers, for direct calls.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F

from cnncost.formulas import BINARY, POINTWISE_ACTIVATIONS, REDUCTIONS, RNN_GATES, UNARY
from cnncost.trace.ops.common import binary, first_tensor, moved, shape, unary
from cnncost.trace.ops.registry import (SIGNATURES, Handler, Layer, function_as_op, handles,
                                        handles_function)


# -- matrix products ------------------------------------------------------------------------------------------
# Every form is a "linear" layer (conv + linear = torchvision's `_ops`): (rows x in_features) @ (in x out).
# A product that adds C (addmm, baddbmm, addbmm, addmv with beta != 0) books beta*C as bias adds.


def product(first: int, adds: bool) -> Handler:
    """mm / bmm (a, b), addmm / baddbmm (c, a, b, beta, alpha): rows x in x out multiply-adds."""
    def handler(args: tuple, out) -> Layer:
        a, b = args[first], args[first + 1]
        return Layer("linear", shape(a), {"out_features": b.shape[-1], "bias": adds and args[3] != 0})
    return handler


handles("mm", "bmm")(product(0, False))
handles("addmm", "baddbmm")(product(1, True))


@handles("addbmm")
def addbmm(args: tuple, out) -> Layer:
    """addbmm(c, b1 (B, M, K), b2 (B, K, N), beta, alpha) = c + sum_b b1 b2: (M, B K) @ (B K, N)."""
    b1, b2 = args[1], args[2]
    batch, rows, inner = b1.shape
    return Layer("linear", (rows, batch * inner), {"out_features": b2.shape[-1], "bias": args[3] != 0})


@handles("mv", "dot", "vdot")
def vector_product(args: tuple, out) -> Layer:
    """mv(a (M, K), v (K,)) and dot(u (K,), v (K,)): one output feature per row."""
    return Layer("linear", shape(args[0]), {"out_features": 1, "bias": False})


@handles("addmv")
def addmv(args: tuple, out) -> Layer:
    """addmv(c, a (M, K), v (K,), beta, alpha)."""
    return Layer("linear", shape(args[1]), {"out_features": 1, "bias": args[3] != 0})


@handles("linear")
def linear(args: tuple, out) -> Layer:
    """aten.linear(x, weight, bias=None), seen on some backends."""
    return Layer("linear", shape(args[0]), {"out_features": args[1].shape[0], "bias": args[2] is not None})


# -- attention ------------------------------------------------------------------------------------------------


def attention_layer(q, k, v, mask) -> Layer:
    """Scaled dot-product attention of q (..., L, E), k (..., S, E), v (..., S, Ev), an optional mask."""
    return Layer("scaled_dot_product_attention", shape(q), {
        "key": shape(k), "value": shape(v), "mask": shape(mask) if isinstance(mask, torch.Tensor) else None})


def fused_attention(mask_at: int | None) -> Handler:
    """A fused kernel (q, k, v, ...) with its mask (attn_bias) at an argument position, or none."""
    return lambda args, out: attention_layer(*args[:3], args[mask_at] if mask_at is not None else None)


handles("_scaled_dot_product_flash_attention_for_cpu")(fused_attention(5))
handles("_scaled_dot_product_flash_attention")(fused_attention(None))
handles("_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_fused_attention_overrideable")(fused_attention(3))


@handles("_flash_attention_forward", "_efficient_attention_forward")
def attention_forward(args: tuple, out) -> Layer:
    """The kernels under the fused ops take (B, L, H, E) layouts; bias (efficient) at position 3."""
    q, k, v = (x.transpose(1, 2) for x in args[:3])
    mask = args[3] if isinstance(args[3], torch.Tensor) and args[3].dim() > 1 else None
    return attention_layer(q, k, v, mask)


@handles("scaled_dot_product_attention")
def sdpa(args: tuple, out) -> Layer:
    """scaled_dot_product_attention(query, key, value, attn_mask, ...)."""
    return attention_layer(*args[:4])


function_as_op(F.scaled_dot_product_attention, "scaled_dot_product_attention")  # one layer on every device


@handles_function(F.multi_head_attention_forward)
def multi_head_attention(a: dict, out) -> Layer:
    """F.multi_head_attention_forward(query (L, N, E), key, value, embed_dim, num_heads, ...), which calls
    scaled_dot_product_attention where the tracer's function mode cannot see it: one layer on every device."""
    return Layer("multi_head_attention", shape(a["query"]), {
        "key": shape(a["key"]), "value": shape(a["value"]), "heads": a["num_heads"],
        "in_bias": a["in_proj_bias"] is not None, "out_bias": a["out_proj_bias"] is not None,
        "mask": a["attn_mask"] is not None or a["key_padding_mask"] is not None,
        "average_weights": bool(a["need_weights"] and a["average_attn_weights"]),
        "extra_keys": int(a["bias_k"] is not None) + int(bool(a["add_zero_attn"])),
        "strided": not a["query"].is_contiguous()})  # in-projection bias as an add: see the formula


@handles("_native_multi_head_attention")
def native_multi_head_attention(args: tuple, out) -> Layer:
    """nn.MultiheadAttention's fast path, called directly: (query, key, value (N, L, E), embed_dim, num_head,
    qkv_weight, qkv_bias, proj_weight, proj_bias, mask, need_weights, average_attn_weights, mask_type)."""
    q, k, v = ((x.shape[1], x.shape[0], x.shape[2]) if x.dim() == 3 else shape(x) for x in args[:3])
    return Layer("multi_head_attention", q, {"key": k, "value": v, "heads": args[4], "in_bias": args[6] is not None,
                                       "out_bias": args[8] is not None, "mask": args[9] is not None,
                                       "average_weights": bool(args[10] and args[11]),
                                       # as the module's slow path, which transposes a batch-first query
                                       "strided": args[0].dim() == 3 and not args[0].transpose(0, 1).is_contiguous()})


# -- recurrent layers -------------------------------------------------------------------------------------
# nn.LSTM / nn.GRU / nn.RNN call torch.lstm / gru / rnn_tanh / rnn_relu: a fused kernel on the CPU (mkldnn_rnn_layer),
# mm's and pointwise ops on meta; booked whole, as one layer, so that it costs the same on every device.


def rnn_signature(*args):
    """torch.lstm/gru/rnn_*(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first),
    or for a packed sequence (data, batch_sizes, hx, params, has_biases, num_layers, dropout, train, bidirectional)."""


def recurrent(mode: str):
    """The layer of one torch.lstm / gru / rnn_* call, from its weights (w_ih: gates H x I, w_hh: gates H x H_out)."""
    def handler(a: dict, out) -> Layer:
        args = a["args"]
        packed = isinstance(args[1], torch.Tensor) and args[1].dim() == 1 and not args[1].is_floating_point()
        x, params, has_biases, layers, bidirectional = (
            args[0], args[3], args[4], args[5], args[8]) if packed else (args[0], args[2], args[3], args[4], args[7])
        in_shape = (x.shape[0], 1, x.shape[1]) if packed else shape(x)
        if not packed and args[8] and x.dim() == 3:  # batch_first: (N, T, I)
            in_shape = (x.shape[1], x.shape[0], x.shape[2])
        w_ih, w_hh = params[0], params[1]
        hidden = w_ih.shape[0] // RNN_GATES[mode]
        proj = w_hh.shape[1] if w_hh.shape[1] != hidden else 0
        return Layer("rnn", in_shape, {"hidden": hidden, "mode": mode, "layers": layers, "bidirectional": bidirectional,
                                 "bias": bool(has_biases), "proj": proj})
    return handler


for _mode in RNN_GATES:
    SIGNATURES[getattr(torch, _mode)] = inspect.signature(rnn_signature)
    handles_function(getattr(torch, _mode))(recurrent(_mode))


def bilinear_signature(input1, input2, weight, bias=None):
    """F.bilinear's arguments (the builtin has no Python signature)."""


SIGNATURES[F.bilinear] = inspect.signature(bilinear_signature)


@handles_function(F.bilinear)
def bilinear(a: dict, out) -> Layer:
    """F.bilinear(x1 (..., in1), x2 (..., in2), weight (out, in1, in2), bias): one layer (aten._trilinear and
    the bias add)."""
    out_features, _, in2 = a["weight"].shape
    return Layer("bilinear", shape(a["input1"]), {"in2_features": in2, "out_features": out_features,
                                             "bias": a["bias"] is not None})


@handles("_trilinear")
def trilinear(args: tuple, out) -> Layer:
    """_trilinear(i1, i2, i3, expand1, expand2, expand3, sumdim, unroll_dim): each operand unsqueezed at its
    expand dims, broadcast together, multiplied and summed over sumdim."""
    def expanded(t, dims):
        size = list(t.shape)
        for d in sorted(dims):
            size.insert(d, 1)
        return size
    parts = [expanded(t, dims) for t, dims in zip(args[:3], args[3:6])]
    joint = tuple(max(sizes) for sizes in zip(*parts))
    return Layer("trilinear", shape(args[0]), {"joint": joint, "out_shape": tuple(out.shape)})


@handles("_cdist_forward")
def cdist(args: tuple, out) -> Layer:
    """_cdist_forward(x1 (..., P, M), x2 (..., R, M), p, compute_mode)."""
    return Layer("cdist", shape(args[0]), {"other": shape(args[1])})


@handles("_fft_r2c", "_fft_c2r", "_fft_c2c")
def fft(args: tuple, out) -> Layer:
    """_fft_r2c(x, dim, normalization, onesided), _fft_c2c(x, dim, normalization, forward), _fft_c2r(x, dim,
    normalization, last_dim_size): transforms over dims (the larger of input and output sizes along each)."""
    x, o = args[0], first_tensor(out)
    dims = [d % x.dim() for d in args[1]]
    full = tuple(max(a, b) if i in dims else a for i, (a, b) in enumerate(zip(x.shape, o.shape)))
    return Layer("fft", full, {"dims": tuple(dims), "out_shape": tuple(o.shape)})


# -- activations ----------------------------------------------------------------------------------------------


for _kind in ("relu", "silu", "sigmoid", "gelu", "hardswish", "hardsigmoid", "tanh",
              *(k for k in POINTWISE_ACTIVATIONS if k not in ("hardtanh", "logsigmoid"))):
    handles(_kind)(unary(_kind))
handles("log_sigmoid_forward", "log_sigmoid")(unary("logsigmoid"))
handles("rrelu_with_noise")(unary("leaky_relu"))  # at inference, a leaky ReLU of the mean slope
handles("_softmax", "_safe_softmax", "softmax")(unary("softmax"))
handles("_log_softmax", "log_softmax")(unary("log_softmax"))


@handles("glu")
def glu(args: tuple, out) -> Layer:
    """glu(x, dim=-1): a * sigmoid(b) of x's two halves along dim."""
    return Layer("glu", shape(args[0]), {"dim": args[1]})


@handles("hardtanh")
def hardtanh(args: tuple, out) -> Layer:
    """hardtanh(x, 0, 6) is ReLU6; other bounds are hardtanh."""
    bounds = tuple(float(v) for v in args[1:3])
    return Layer(("relu6" if bounds == (0.0, 6.0) else "hardtanh"), shape(args[0]), {})


@handles("_prelu_kernel", "prelu")
def prelu(args: tuple, out) -> Layer:
    """_prelu_kernel(x, weight): weight holds 1 or C slopes (reshaped to broadcast)."""
    return Layer("prelu", shape(args[0]), {"num_parameters": args[1].numel()})


# -- elementwise ops and reductions ----------------------------------------------------------------------------


for _kind in ("add", "mul", *BINARY):
    handles(_kind)(binary(_kind))
handles("true_divide")(binary("div"))
for _kind in UNARY:
    handles(_kind)(unary(_kind))


def ternary(kind: str) -> Handler:
    """addcmul / addcdiv (x, a, b, value), lerp (x, y, weight): three operands broadcast."""
    return lambda args, out: Layer(kind, shape(args[0]), {"others": [shape(a) for a in args[1:3]]})


for _kind in ("addcmul", "addcdiv", "lerp"):
    handles(_kind)(ternary(_kind))


@handles("where")
def where(args: tuple, out) -> Layer | None:
    """where(condition, x, y); where(condition) alone is nonzero (data movement)."""
    if len(args) < 3:
        return moved(args, out)
    return Layer("where", shape(args[1]), {"other": shape(args[2]), "condition": shape(args[0])})


def dims_of(value: Any) -> list[int] | None:
    """A reduction's dim argument as a list (None: every dim); not a dim when it is a flag, dtype or tensor."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(d, int) for d in value):
        return list(value) or None
    return None


def reduction(kind: str, dim_at: int = 1, keepdim_at: int = 2) -> Handler:
    """A reduction over dims (args[dim_at]; none or a non-dim: every dim), keepdim at args[keepdim_at]."""
    def handler(args: tuple, out) -> Layer:
        x = args[0]
        if kind in ("max", "min") and len(args) > 1 and isinstance(args[1], torch.Tensor):
            return binary("maximum" if kind == "max" else "minimum")(args, out)  # max.other(self, other)
        dims = dims_of(args[dim_at]) if len(args) > dim_at else None
        keepdim = dims is not None and len(args) > keepdim_at and args[keepdim_at] is True
        return Layer(kind, shape(x), {"dims": dims, "keepdim": keepdim})
    return handler


for _kind in REDUCTIONS:
    if _kind != "mean":  # mean is a global pool over spatial dims, else a reduction: below
        handles(_kind)(reduction(_kind))
mean_reduction = reduction("mean")


@handles("mean")
def mean(args: tuple, out) -> Layer | None:
    """mean over every spatial dim of an NCHW / NCDHW tensor is a global average pool (adaptive_avg_pool(1))."""
    x, dims = args[0], args[1] if len(args) > 1 else None
    rank = x.dim() - 2
    spatial = list(range(2, x.dim()))
    if rank in (2, 3) and isinstance(dims, (list, tuple)) and sorted(d % x.dim() for d in dims) == spatial:
        return Layer(f"adaptive_avgpool{rank}d", shape(x), {"output_size": 1,
                                                             "keepdim": len(args) > 2 and args[2] is True})
    return mean_reduction(args, out)  # any other mean is a reduction
# var / std (self, dim, correction | unbiased, keepdim); norm (self, p, dim, keepdim), linalg_vector_norm alike
for _kind in ("var", "std", "var_mean", "std_mean"):
    handles(_kind)(reduction(_kind, keepdim_at=3))


handles("logsumexp")(reduction("logsumexp"))  # logsumexp(self, dim, keepdim)


@handles("norm", "linalg_vector_norm")
def vector_norm(args: tuple, out) -> Layer:
    """norm(self, p, dim, keepdim) / linalg_vector_norm(self, ord, dim, keepdim)."""
    dims = dims_of(args[2]) if len(args) > 2 else None
    return Layer("vector_norm", shape(args[0]), {"dims": dims, "keepdim": dims is not None and args[3] is True})


@handles("sort")
def sort(args: tuple, out) -> Layer:
    """sort(self, dim=-1, descending) or sort.stable(self, stable, dim, descending)."""
    dim = args[2] if isinstance(args[1], bool) or args[1] is None else args[1]
    return Layer("sort", shape(args[0]), {"dim": -1 if dim is None else dim})


@handles("topk")
def topk(args: tuple, out) -> Layer:
    """topk(self, k, dim=-1, largest, sorted)."""
    return Layer("topk", shape(args[0]), {"k": int(args[1]), "dim": args[2]})


@handles("nms")
def nms(args: tuple, out) -> Layer:
    """torchvision.nms(boxes, scores, iou_threshold): data dependent, so costed at its upper bound (every pair)."""
    boxes = shape(args[0])
    return Layer("nms", boxes, {}) if boxes[0] else Layer("data_movement", (1,), {"out_shape": (0,), "read": 0})


@handles("_unique2", "unique_dim", "_unique", "unique_consecutive")
def unique(args: tuple, out) -> Layer:
    """unique sorts its input: a sort of all its elements."""
    return Layer("sort", (max(1, args[0].numel()),), {"dim": 0})


