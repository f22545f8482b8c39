"""Layer kinds and categories shared by our tracer and the adapters (no torch import)."""
from __future__ import annotations

from cnncost.formulas import ACTIVATIONS

CATEGORY = {"conv2d": "conv", "linear": "linear", "batchnorm2d": "norm", "group_norm": "norm",
            "layer_norm": "norm", "instance_norm": "norm", "maxpool2d": "pool", "avgpool2d": "pool",
            "adaptive_avgpool2d": "pool", "add": "elementwise", "mul": "elementwise",
            **{a: "activation" for a in ACTIVATIONS}}

# How other tools name an op (fvcore's op names, ptflops's patched functions, aten packets) -> our kind.
TOOL_OPS = {"conv": "conv2d", "convolution": "conv2d", "_convolution": "conv2d", "conv2d": "conv2d",
            "linear": "linear", "addmm": "linear", "mm": "linear", "bmm": "linear", "matmul": "linear",
            "baddbmm": "linear", "einsum": "linear", "batch_norm": "batchnorm2d", "group_norm": "group_norm",
            "layer_norm": "layer_norm", "instance_norm": "instance_norm", "max_pool2d": "maxpool2d",
            "avg_pool2d": "avgpool2d", "adaptive_avg_pool2d": "adaptive_avgpool2d", "add": "add", "mul": "mul",
            **{a: a for a in ACTIVATIONS}}
# ptflops hooks modules by class: class name -> our kind.
MODULE_KINDS = {"Conv2d": "conv2d", "Linear": "linear", "BatchNorm2d": "batchnorm2d", "ReLU": "relu",
                "ReLU6": "relu6", "GELU": "gelu", "MaxPool2d": "maxpool2d", "AvgPool2d": "avgpool2d",
                "AdaptiveAvgPool2d": "adaptive_avgpool2d", "GroupNorm": "group_norm", "LayerNorm": "layer_norm"}


def category(kind: str) -> str:
    """The op category of a layer kind (conv, linear, norm, activation, pool, elementwise, other)."""
    return CATEGORY.get(kind, "other")


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
