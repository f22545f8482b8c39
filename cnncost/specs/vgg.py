"""VGG-11/13/16/19 (configurations A, B, D, E of Simonyan and Zisserman 2015), with or without batch norm."""
from __future__ import annotations

from cnncost.specs.registry import register
from cnncost.specs.alexnet import classifier
from cnncost.specs.base import Builder, Spec

PAPER = "Simonyan and Zisserman 2015, Very Deep Convolutional Networks (Tables 1, 2)"
# 3x3 convs per block (channels 64, 128, 256, 512, 512), each block ending in a 2x2/2 max pool.
CONFIGS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
WIDTHS = (64, 128, 256, 512, 512)
PAPER_PARAMS = {11: 133e6, 13: 133e6, 16: 138e6, 19: 144e6}


def build_vgg(b: Builder, depth: int = 16, batch_norm: bool = False) -> Spec:
    """Five blocks of 3x3 convs (+BN) + ReLU, each followed by a max pool; avg pool to 7x7; 4096-4096-1000."""
    i = 0
    for n, (convs, width) in enumerate(zip(CONFIGS[depth], WIDTHS), 1):
        b.stage = f"conv{n}"
        for _ in range(convs):
            b.add(f"features.{i}", "conv2d", out_channels=width, kernel=3, padding=1, bias=True)
            if batch_norm:
                b.add(f"features.{i + 1}", "batchnorm2d")
            i += 2 + batch_norm
            b.add(f"features.{i - 1}", "relu")
        b.add(f"features.{i}", "maxpool2d", kernel=2, stride=2)
        i += 1
    b.stage = "fc6"
    b.add("avgpool", "adaptive_avgpool2d", output_size=7)
    return classifier(b, (0, 3, 6))


for _depth, _letter in zip(CONFIGS, "ABDE"):
    register(f"vgg{_depth}", build_vgg, 224, torchvision=f"vgg{_depth}", family="vgg", depth=_depth,
             paper={"source": PAPER, "params": PAPER_PARAMS[_depth], "note": f"configuration {_letter}"})
    register(f"vgg{_depth}_bn", build_vgg, 224, torchvision=f"vgg{_depth}_bn", family="vgg", depth=_depth,
             batch_norm=True, paper={"source": PAPER, "note": f"configuration {_letter} with batch norm "
                                     "(not in the paper; torchvision's variant)"})
