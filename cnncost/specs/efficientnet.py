"""EfficientNet-B0..B7 (Tan and Le 2019): B0's stage table plus width, depth and resolution coefficients.

Channels are scaled by the width coefficient and rounded to a multiple of 8 without dropping
more than 10% (`make_divisible`); each stage's repeats are scaled by the depth coefficient and
rounded up. A block (MBConv) is: 1x1 expansion (unless the ratio is 1), k x k depthwise conv,
squeeze-and-excitation squeezing to a quarter of the *block input* channels, 1x1 projection,
and a residual add when stride is 1 and the channels match.
"""
from __future__ import annotations

import math

from cnncost.formulas import Shape
from cnncost.specs.registry import register
from cnncost.specs.base import Builder, Spec

PAPER = "Tan and Le 2019, EfficientNet: Rethinking Model Scaling for CNNs (Tables 1, 2)"
# The paper's Table 1: expand ratio, kernel, stride, input channels, output channels, repeats (stages 2..8).
B0 = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
      (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))
# Bk: (width, depth) coefficients, torchvision's evaluation resolution (crop_size), the paper's resolution,
# and the paper's Table 2: params, FLOPs (= MACs), top-1.
VARIANTS = {0: (1.0, 1.0, 224, 224, 5.3e6, 0.39e9, 77.1), 1: (1.0, 1.1, 240, 240, 7.8e6, 0.70e9, 79.1),
            2: (1.1, 1.2, 288, 260, 9.2e6, 1.0e9, 80.1), 3: (1.2, 1.4, 300, 300, 12e6, 1.8e9, 81.6),
            4: (1.4, 1.8, 380, 380, 19e6, 4.2e9, 82.9), 5: (1.6, 2.2, 456, 456, 30e6, 9.9e9, 83.6),
            6: (1.8, 2.6, 528, 528, 43e6, 19e9, 84.0), 7: (2.0, 3.1, 600, 600, 66e6, 37e9, 84.3)}


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of divisor (at least divisor), adding one if that lost more than 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def mbconv(b: Builder, prefix: str, expand: int, kernel: int, stride: int, c_in: int, c_out: int) -> Shape:
    """One MBConv block, layers named prefix.block.i like torchvision's; residual add named prefix."""
    x, i = b.shape, 0
    hidden = make_divisible(c_in * expand)
    if hidden != c_in:
        b.conv_bn_act(f"{prefix}.block.0", hidden, 1, act="silu")
        i = 1
    b.conv_bn_act(f"{prefix}.block.{i}", hidden, kernel, stride, groups=hidden, act="silu")
    b.add(f"{prefix}.block.{i + 1}", "squeeze_excitation", squeeze_channels=max(1, c_in // 4), activation="silu")
    y = b.conv_bn_act(f"{prefix}.block.{i + 2}", c_out, 1, act=None)
    return b.add(prefix, "add", other=x) if stride == 1 and c_in == c_out else y


def build_efficientnet(b: Builder, width_mult: float = 1.0, depth_mult: float = 1.0, table=B0) -> Spec:
    """Stem 3x3/2 conv, seven MBConv stages, 1x1 head conv to 4x the last channels, average pool, fc."""
    widen = lambda c: make_divisible(c * width_mult)  # noqa: E731
    b.stage = "stem"
    b.conv_bn_act("features.0", widen(table[0][3]), 3, 2, act="silu")
    for s, (expand, kernel, stride, c_in, c_out, repeats) in enumerate(table, 1):
        b.stage = f"stage{s}"
        for j in range(math.ceil(repeats * depth_mult)):
            mbconv(b, f"features.{s}.{j}", expand, kernel, 1 if j else stride, widen(c_out if j else c_in),
                   widen(c_out))
    b.stage = "head"
    b.conv_bn_act(f"features.{len(table) + 1}", 4 * widen(table[-1][4]), 1, act="silu")
    b.stage = "classifier"
    b.add("avgpool", "adaptive_avgpool2d", output_size=1)
    b.add("(model)", "flatten")
    b.add("classifier.1", "linear", out_features=1000)
    return b.spec


for _k, (_w, _d, _res, _paper_res, _params, _macs, _top1) in VARIANTS.items():
    _note = f"; the paper evaluates at {_paper_res}x{_paper_res}" if _paper_res != _res else ""
    register(f"efficientnet_b{_k}", build_efficientnet, _res, aliases=(f"effnet_b{_k}",),
             torchvision=f"efficientnet_b{_k}", family="efficientnet", width_mult=_w, depth_mult=_d,
             paper={"source": PAPER, "params": _params, "macs": _macs, "top1": _top1, "resolution": _paper_res,
                    "note": f"width x{_w}, depth x{_d}; default size {_res} is torchvision's crop{_note}"})
