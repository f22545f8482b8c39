"""DenseNet-BC 121/169/201/264 (Huang et al. 2017): growth k=32, bottleneck 4k, compression 0.5.

Every dense layer concatenates all earlier feature maps of its block (torch.cat in the layer's
forward) before BN-ReLU-1x1 conv (4k)-BN-ReLU-3x3 conv (k); the block ends with one more
concatenation. The concatenations cost no arithmetic but a lot of memory traffic.
"""
from __future__ import annotations

from cnncost.formulas import Shape
from cnncost.specs.registry import register
from cnncost.specs.base import Builder, Spec

PAPER = "Huang et al. 2017, Densely Connected Convolutional Networks (Table 1; Table 3 single-crop top-1)"
BLOCKS = {121: (6, 12, 24, 16), 169: (6, 12, 32, 32), 201: (6, 12, 48, 32), 264: (6, 12, 64, 48)}
TOP1 = {121: 100 - 25.02, 169: 100 - 23.80, 201: 100 - 22.58, 264: 100 - 22.15}


def norm_relu_conv(b: Builder, prefix: str, x: Shape, out: int, kernel: int, suffix: str = "") -> Shape:
    """Pre-activation unit: norm{suffix}, relu{suffix}, conv{suffix} (no bias, 'same' padding)."""
    y = b.add(f"{prefix}.norm{suffix}", "batchnorm2d", x)
    y = b.add(f"{prefix}.relu{suffix}", "relu", y)
    return b.add(f"{prefix}.conv{suffix}", "conv2d", y, out_channels=out, kernel=kernel, padding=kernel // 2)


def dense_block(b: Builder, prefix: str, layers: int, growth: int, bn_size: int) -> Shape:
    """`layers` dense layers, each reading the concatenation of the block input and all earlier outputs.

    The j earlier outputs (growth channels each) enter a concatenation as one shape of j x growth channels:
    the same elements read and written, the same cost.
    """
    x = b.shape
    grown = lambda j: ((x[0], growth * j, *x[2:]),) if j else ()  # noqa: E731  (j earlier outputs, as one shape)
    for j in range(1, layers + 1):
        name = f"{prefix}.denselayer{j}"
        stacked = b.add(name, "concat", x, others=grown(j - 1))
        hidden = norm_relu_conv(b, name, stacked, bn_size * growth, 1, "1")
        norm_relu_conv(b, name, hidden, growth, 3, "2")
    return b.add(prefix, "concat", others=grown(layers))


def build_densenet(b: Builder, blocks=BLOCKS[121], growth: int = 32, init: int = 64, bn_size: int = 4,
                   compression: float = 0.5) -> Spec:
    """7x7/2 conv, 3x3/2 max pool, dense blocks joined by transitions (BN-ReLU-1x1 conv-2x2 avg pool), fc."""
    b.stage = "conv0"
    b.conv_bn_act("features", init, 7, 2, 3, names=("conv0", "norm0", "relu0"))
    b.add("features.pool0", "maxpool2d", kernel=3, stride=2, padding=1)
    for i, layers in enumerate(blocks, 1):
        b.stage = f"denseblock{i}"
        channels = dense_block(b, f"features.denseblock{i}", layers, growth, bn_size)[1]
        if i < len(blocks):
            b.stage = f"transition{i}"
            b.shape = norm_relu_conv(b, f"features.transition{i}", b.shape, int(channels * compression), 1)
            b.add(f"features.transition{i}.pool", "avgpool2d", kernel=2, stride=2)
    b.stage = "classifier"
    b.add("features.norm5", "batchnorm2d")
    b.add("(model)", "relu")
    b.add("(model)", "adaptive_avgpool2d", output_size=1)
    b.add("(model)", "flatten")
    b.add("classifier", "linear", out_features=1000)
    return b.spec


for _depth, _blocks in BLOCKS.items():
    register(f"densenet{_depth}", build_densenet, 224, torchvision=f"densenet{_depth}" if _depth < 264 else None,
             family="densenet", blocks=_blocks, paper={"source": PAPER, "top1": round(TOP1[_depth], 2)})
register("densenet161", build_densenet, 224, torchvision="densenet161", family="densenet", blocks=(6, 12, 36, 24),
         growth=48, init=96, paper={"source": PAPER, "note": "k=48, 96 initial channels: not in the paper's tables"})
