"""ResNet-18..152 (He et al. 2016) in v1 and v1.5, ResNeXt (Xie et al. 2017) and Wide ResNet.

v1 (the ResNet paper, Caffe) strides the first 1x1 conv of a down-sampling bottleneck; v1.5
(fb.resnet.torch, the ResNeXt paper, torchvision) strides the 3x3 conv instead, so the first
1x1 runs at the block's input resolution, 4x the positions: 3 blocks x 77.1M = 231.2M MACs
more, ResNet-50 goes from 3.86 to 4.09 GMACs (the ResNet paper's 3.8G, the ResNeXt paper's 4.1G).
ResNeXt-50 32x4d is ResNet-50 with groups=32 and 4 channels per group (width 128 in conv2_x).
"""
from __future__ import annotations

import math

from cnncost.formulas import Shape
from cnncost.specs.registry import register
from cnncost.specs.base import Builder, Spec
from cnncost.specs.efficientnet import make_divisible

RESNET = "He et al. 2016, Deep Residual Learning for Image Recognition (Table 1)"
RESNEXT = "Xie et al. 2017, Aggregated Residual Transformations (Table 1; Table 3 for top-1)"
WIDE = "Zagoruyko and Komodakis 2016, Wide Residual Networks"
DEPTHS = {18: (False, (2, 2, 2, 2)), 34: (False, (3, 4, 6, 3)), 50: (True, (3, 4, 6, 3)),
          101: (True, (3, 4, 23, 3)), 152: (True, (3, 8, 36, 3))}


def shortcut(b: Builder, prefix: str, x: Shape, out: int, stride: int) -> Shape:
    """The identity, or a strided 1x1 conv + BN projection (downsample.0/.1); then add and ReLU."""
    identity = x
    if stride != 1 or x[1] != out:
        identity = b.conv_bn_act(f"{prefix}.downsample", out, 1, stride, 0, act=None, x=x)
    b.add(prefix, "add", other=identity)
    return b.add(f"{prefix}.relu", "relu")


def basic_block(b: Builder, prefix: str, planes: int, stride: int, **_) -> Shape:
    """Two 3x3 convs (BasicBlock, expansion 1)."""
    x = b.shape
    b.conv_bn_act(prefix, planes, 3, stride, names=("conv1", "bn1", "relu"))
    b.conv_bn_act(prefix, planes, 3, act=None, names=("conv2", "bn2"))
    return shortcut(b, prefix, x, planes, stride)


def bottleneck(b: Builder, prefix: str, planes: int, stride: int, groups: int = 1, width_per_group: int = 64,
               v1: bool = False) -> Shape:
    """1x1 reduce, 3x3 (grouped), 1x1 expand x4; v1 strides the first 1x1, v1.5 the 3x3."""
    x, width = b.shape, int(planes * width_per_group / 64) * groups
    first, middle = (stride, 1) if v1 else (1, stride)
    b.conv_bn_act(prefix, width, 1, first, names=("conv1", "bn1", "relu"))
    b.conv_bn_act(prefix, width, 3, middle, groups=groups, names=("conv2", "bn2", "relu"))
    b.conv_bn_act(prefix, planes * 4, 1, act=None, names=("conv3", "bn3"))
    return shortcut(b, prefix, x, planes * 4, stride)


def build_resnet(b: Builder, depth: int = 50, groups: int = 1, width_per_group: int = 64, v1: bool = False,
                 width_mult: float = 1.0, depth_mult: float = 1.0) -> Spec:
    """7x7/2 conv, 3x3/2 max pool, four stages of blocks (conv2_x..conv5_x), global average pool, fc 1000."""
    use_bottleneck, repeats = DEPTHS[depth]
    block, expansion = (bottleneck, 4) if use_bottleneck else (basic_block, 1)
    widen = lambda c: make_divisible(c * width_mult)  # noqa: E731
    b.stage = "conv1"
    b.conv_bn_act("", widen(64), 7, 2, 3, names=("conv1", "bn1", "relu"))
    b.stage = "conv2"
    b.add("maxpool", "maxpool2d", kernel=3, stride=2, padding=1)
    for i, n in enumerate(repeats):
        b.stage = f"conv{i + 2}"
        for j in range(math.ceil(n * depth_mult)):
            block(b, f"layer{i + 1}.{j}", widen(64 * 2**i), 2 if i and not j else 1, groups=groups,
                  width_per_group=width_per_group, v1=v1)
    b.stage = "fc"
    b.add("avgpool", "adaptive_avgpool2d", output_size=1)
    b.add("(model)", "flatten")
    b.add("fc", "linear", out_features=1000)
    return b.spec


V15 = ("v1.5: a down-sampling bottleneck strides its 3x3 conv, so its first 1x1 runs at 4x the positions "
       "(fb.resnet.torch, the ResNeXt paper, torchvision); the ResNet paper's FLOPs are v1 (see the _v1 variant)")
V1 = ("v1: a down-sampling bottleneck strides its first 1x1 conv, as in the ResNet paper's Caffe models whose FLOPs "
      "it reproduces; v1.5 (torchvision) runs that 1x1 at 4x the positions (ResNet-50: 3.86G -> 4.09G MACs)")
PAPERS = {  # the ResNet paper's Table 1 FLOPs (= MACs); the ResNeXt paper's Tables 1 and 3 (single-crop top-1)
    "resnet18": {"source": RESNET, "macs": 1.8e9}, "resnet34": {"source": RESNET, "macs": 3.6e9},
    "resnet50": {"source": RESNEXT, "params": 25.5e6, "macs": 4.1e9, "top1": 100 - 23.9, "note": V15},
    "resnet101": {"source": RESNEXT, "macs": 7.8e9, "top1": 100 - 22.0, "note": V15},
    "resnet152": {"source": RESNET, "note": V15},
    "resnet50_v1": {"source": RESNET, "macs": 3.8e9, "note": V1},
    "resnet101_v1": {"source": RESNET, "macs": 7.6e9, "note": V1},
    "resnet152_v1": {"source": RESNET, "macs": 11.3e9, "note": V1},
}

for _depth in DEPTHS:
    register(f"resnet{_depth}", build_resnet, 224, torchvision=f"resnet{_depth}", family="resnet", depth=_depth,
             paper=PAPERS[f"resnet{_depth}"])
for _depth in (50, 101, 152):
    register(f"resnet{_depth}_v1", build_resnet, 224, family="resnet", depth=_depth, v1=True,
             paper=PAPERS[f"resnet{_depth}_v1"])
register("resnext50_32x4d", build_resnet, 224, aliases=("resnext50",), torchvision="resnext50_32x4d",
         family="resnext", depth=50, groups=32, width_per_group=4,
         paper={"source": RESNEXT, "params": 25.0e6, "macs": 4.2e9, "top1": 100 - 22.2})
register("resnext101_32x8d", build_resnet, 224, aliases=("resnext101",), torchvision="resnext101_32x8d",
         family="resnext", depth=101, groups=32, width_per_group=8,
         paper={"source": RESNEXT, "note": "32x8d is not in the paper's tables"})
register("resnext101_64x4d", build_resnet, 224, torchvision="resnext101_64x4d", family="resnext", depth=101,
         groups=64, width_per_group=4, paper={"source": RESNEXT})
register("wide_resnet50_2", build_resnet, 224, torchvision="wide_resnet50_2", family="resnet", depth=50,
         width_per_group=128, paper={"source": WIDE})
register("wide_resnet101_2", build_resnet, 224, torchvision="wide_resnet101_2", family="resnet", depth=101,
         width_per_group=128, paper={"source": WIDE})
