"""GoogLeNet (Inception-v1): the paper's Table 1 and torchvision's implementation.

torchvision differs from the paper in three visible ways, kept as builder arguments: the
"5x5" branch uses a 3x3 kernel (pytorch/vision#906), every conv is followed by batch norm
(and has no bias), and the max pool before inception5a is 2x2/2 instead of 3x3/2.
"""
from __future__ import annotations

from cnncost.formulas import Shape
from cnncost.specs.registry import register
from cnncost.specs.base import Builder, Spec

PAPER = "Szegedy et al. 2015, Going Deeper with Convolutions (Table 1)"
# #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj (the paper's Table 1); a max pool 3x3/2 after 3b and 4e.
MODULES = {"3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
           "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64), "4c": (128, 128, 256, 24, 64, 64),
           "4d": (112, 144, 288, 32, 64, 64), "4e": (256, 160, 320, 32, 128, 128),
           "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128)}
POOL_AFTER = {"3b": "maxpool3", "4e": "maxpool4"}


class Inception:
    """Emits BasicConv2d-style units (conv [+ BN] + functional ReLU) and inception modules on a builder."""

    def __init__(self, b: Builder, batch_norm: bool, k5: int):
        self.b, self.batch_norm, self.k5 = b, batch_norm, k5

    def conv(self, name: str, out: int, kernel: int, x: Shape | None = None, stride: int = 1) -> Shape:
        """name.conv (+ name.bn) then the ReLU, which torchvision calls functionally inside module `name`."""
        b, follow = self.b, (lambda y: y if x is not None else None)
        y = b.add(f"{name}.conv", "conv2d", x, out_channels=out, kernel=kernel, stride=stride,
                  padding=(kernel - 1) // 2, bias=not self.batch_norm)
        if self.batch_norm:
            y = b.add(f"{name}.bn", "batchnorm2d", follow(y))
        return b.add(name, "relu", follow(y))

    def module(self, name: str, widths: tuple[int, ...]) -> Shape:
        """Four parallel branches on the module's input, concatenated along channels."""
        n1, r3, n3, r5, n5, proj = widths
        x = self.b.shape
        y1 = self.conv(f"{name}.branch1", n1, 1, x)
        y2 = self.conv(f"{name}.branch2.1", n3, 3, self.conv(f"{name}.branch2.0", r3, 1, x))
        y3 = self.conv(f"{name}.branch3.1", n5, self.k5, self.conv(f"{name}.branch3.0", r5, 1, x))
        pooled = self.b.add(f"{name}.branch4.0", "maxpool2d", x, kernel=3, stride=1, padding=1, ceil_mode=True)
        y4 = self.conv(f"{name}.branch4.1", proj, 1, pooled)
        self.b.shape = y1
        return self.b.add(name, "concat", others=[y2, y3, y4])


def build_googlenet(b: Builder, batch_norm: bool = True, k5: int = 3, pool4: int = 2) -> Spec:
    """Stem (7x7/2 conv, pool, 1x1 + 3x3 conv, pool), nine inception modules, global average pool, fc."""
    net = Inception(b, batch_norm, k5)
    b.stage = "conv1"
    net.conv("conv1", 64, 7, stride=2)
    b.add("maxpool1", "maxpool2d", kernel=3, stride=2, ceil_mode=True)
    b.stage = "conv2"
    net.conv("conv2", 64, 1)
    net.conv("conv3", 192, 3)
    b.add("maxpool2", "maxpool2d", kernel=3, stride=2, ceil_mode=True)
    for tag, widths in MODULES.items():
        b.stage = f"inception{tag}"
        net.module(f"inception{tag}", widths)
        if tag in POOL_AFTER:
            kernel = pool4 if tag == "4e" else 3
            b.add(POOL_AFTER[tag], "maxpool2d", kernel=kernel, stride=2, ceil_mode=True)
    b.stage = "fc"
    if batch_norm:
        b.add("avgpool", "adaptive_avgpool2d", output_size=1)
    else:
        b.add("avgpool", "avgpool2d", kernel=7, stride=1)
    b.add("(model)", "flatten")
    b.add("fc", "linear", out_features=1000)
    return b.spec


register("googlenet", build_googlenet, 224, torchvision="googlenet", family="googlenet",
         paper={"source": PAPER, "macs": 1.5e9, "note": "torchvision's implementation: 3x3 (not 5x5) convs in the "
                "third branch, batch norm, no bias, 2x2/2 max pool before 5a; auxiliary classifiers (training only) "
                "left out, as torchvision's pretrained model does"})
register("googlenet_paper", build_googlenet, 224, aliases=("inception_v1",), family="googlenet",
         batch_norm=False, k5=5, pool4=3,
         paper={"source": PAPER, "macs": 1.5e9,
                "note": "the paper's Table 1: 5x5 convs in the third branch, conv biases, no batch norm, "
                "7x7/1 average pool; local response normalization and the training-only auxiliary "
                "classifiers left out"})
