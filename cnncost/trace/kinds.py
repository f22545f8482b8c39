"""How other tools name ops and modules, mapped to our layer kinds, and how rows are named (no torch import).

A kind's category is the one its formula's registration states (`formulas.category_of`); nothing here repeats it.
"""
from __future__ import annotations

from cnncost.formulas import ACTIVATIONS, RESAMPLING, category_of

category = category_of

RANKS = (1, 2, 3)

# How other tools name an op (fvcore's op names, ptflops's patched functions, aten packets) -> our kind.
TOOL_OPS = {"conv": "conv2d", "convolution": "conv2d", "_convolution": "conv2d", "conv2d": "conv2d",
            "linear": "linear", "addmm": "linear", "mm": "linear", "bmm": "linear", "matmul": "linear",
            "baddbmm": "linear", "einsum": "linear", "batch_norm": "batchnorm2d", "group_norm": "group_norm",
            "layer_norm": "layer_norm", "instance_norm": "instance_norm", "max_pool2d": "maxpool2d",
            "avg_pool2d": "avgpool2d", "adaptive_avg_pool2d": "adaptive_avgpool2d", "add": "add", "mul": "mul",
            **{a: a for a in ACTIVATIONS},
            "conv1d": "conv1d", "conv3d": "conv3d", **{f"conv_transpose{r}d": f"conv_transpose{r}d" for r in RANKS},
            "local_response_norm": "lrn", "native_layer_norm": "layer_norm", "native_group_norm": "group_norm",
            **{f"{op}{r}d": f"{kind}{r}d" for op, kind in (("max_pool", "maxpool"), ("avg_pool", "avgpool"),
                                                          ("adaptive_avg_pool", "adaptive_avgpool"),
                                                          ("adaptive_max_pool", "adaptive_maxpool"),
                                                          ("_adaptive_avg_pool", "adaptive_avgpool"))
               for r in RANKS},
            **{f"max_pool{r}d_with_indices": f"maxpool{r}d" for r in RANKS},
            **{op: r.kind for r in RESAMPLING.values() for op in r.ops()},
            "grid_sampler": "grid_sample",
            # nn.Upsample / F.interpolate, as ptflops and thop hook them: any interpolation mode
            "interpolate": "upsample", "upsample": "upsample", "addbmm": "linear", "_scaled_mm": "linear",
            "scaled_dot_product_attention": "attention", "_flash_attention_forward": "attention",
            "_efficient_attention_forward": "attention",
            **{f"_scaled_dot_product_{k}_attention": "attention" for k in ("efficient", "flash", "cudnn")},
            # aten names of kinds that differ from the kind
            "_softmax": "softmax", "_safe_softmax": "softmax", "_log_softmax": "log_softmax",
            "_prelu_kernel": "prelu", "true_divide": "div", "norm": "vector_norm",
            "linalg_vector_norm": "vector_norm", "_scaled_dot_product_flash_attention_for_cpu": "attention"}

# ptflops and thop hook modules by class: class name -> our kind.
MODULE_KINDS = {"Conv2d": "conv2d", "Linear": "linear", "BatchNorm2d": "batchnorm2d", "ReLU": "relu",
                "ReLU6": "relu6", "GELU": "gelu", "MaxPool2d": "maxpool2d", "AvgPool2d": "avgpool2d",
                "AdaptiveAvgPool2d": "adaptive_avgpool2d", "GroupNorm": "group_norm", "LayerNorm": "layer_norm",
                "Conv1d": "conv1d", "Conv3d": "conv3d", "ConvTranspose1d": "conv_transpose1d",
                "ConvTranspose2d": "conv_transpose2d", "ConvTranspose3d": "conv_transpose3d",
                "BatchNorm1d": "batchnorm1d", "BatchNorm3d": "batchnorm3d", "LocalResponseNorm": "lrn",
                "InstanceNorm1d": "instance_norm", "InstanceNorm2d": "instance_norm", "InstanceNorm3d": "instance_norm",
                "MaxPool3d": "maxpool3d", "AvgPool3d": "avgpool3d", "AdaptiveAvgPool3d": "adaptive_avgpool3d",
                "AdaptiveMaxPool2d": "adaptive_maxpool2d", "AdaptiveMaxPool3d": "adaptive_maxpool3d",
                "MaxPool1d": "maxpool1d", "AvgPool1d": "avgpool1d", "AdaptiveAvgPool1d": "adaptive_avgpool1d",
                "AdaptiveMaxPool1d": "adaptive_maxpool1d",
                "PReLU": "prelu", "ELU": "elu", "LeakyReLU": "leaky_relu", "Softmax": "softmax",
                "Upsample": "upsample", "UpsamplingBilinear2d": "upsample_bilinear",
                "UpsamplingNearest2d": "upsample_nearest", "MultiheadAttention": "attention"}


def tool_kind(op: str) -> str:
    """Our kind for another tool's op name ('aten::batch_norm', 'aten.convolution', 'F.relu', 'nn.ReLU')."""
    if op.startswith("nn."):
        return MODULE_KINDS.get(op[3:], op[3:].lower())
    base = op.split("::")[-1]
    for prefix in ("aten.", "F.", "torch.", "Tensor."):
        base = base.removeprefix(prefix)
    base = base.split(".")[0].rstrip("_")
    return TOOL_OPS.get(base, base)


def root_name(name: str) -> str:
    """A module path as a row name: the root module ('') is '(model)'."""
    return name or "(model)"


def stage_of(name: str) -> str:
    """The stage of a row: the top-level module it lives in ('' for the root)."""
    return "" if name in ("", "(model)") else name.split(".")[0]
