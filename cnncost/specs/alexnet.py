"""AlexNet: torchvision's single-GPU variant and the original paper's table (Krizhevsky et al. 2012)."""
from __future__ import annotations

from cnncost.specs.registry import register
from cnncost.specs.base import Builder, Spec

PAPER = "Krizhevsky et al. 2012, ImageNet Classification with Deep CNNs (Fig. 2, Sec. 3.5)"
# (out channels, kernel, stride, padding) of conv1..conv5; max pool 3x3/2 after conv1, conv2 and conv5.
TORCHVISION = ((64, 11, 4, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1))
ORIGINAL = ((96, 11, 4, 0), (256, 5, 1, 2), (384, 3, 1, 1), (384, 3, 1, 1), (256, 3, 1, 1))
POOLED = (1, 2, 5)
# Local response normalization after conv1's and conv2's ReLU, before their pools (Sec. 3.3): n = 5, k = 2,
# alpha = 1e-4, beta = 0.75. The paper's alpha multiplies the sum of squares; PyTorch's LocalResponseNorm (whose
# arguments our "lrn" kind takes) divides alpha by the size, so the paper's 1e-4 is alpha = 5 x 1e-4 there.
NORMED = (1, 2)
PAPER_LRN = {"size": 5, "alpha": 5e-4, "beta": 0.75, "k": 2.0}


def classifier(b: Builder, indices: tuple[int, ...], widths=(4096, 4096, 1000), first_stage: int = 6) -> Spec:
    """Flatten, then fully connected layers classifier.i (ReLU after all but the last), stages fc6, fc7, fc8."""
    b.add("(model)", "flatten")
    for n, (i, width) in enumerate(zip(indices, widths)):
        b.stage = f"fc{first_stage + n}"
        b.add(f"classifier.{i}", "linear", out_features=width)
        if n < len(widths) - 1:
            b.add(f"classifier.{i + 1}", "relu")
    return b.spec


def build_alexnet(b: Builder, convs=TORCHVISION, groups=(1, 1, 1, 1, 1), avgpool: bool = True,
                  lrn: dict | None = None) -> Spec:
    """Five convs (ReLU, [LRN after 1, 2], max pool after 1, 2, 5), [adaptive avg pool to 6x6], then 4096-4096-1000."""
    i = 0
    for n, ((out, kernel, stride, padding), g) in enumerate(zip(convs, groups), 1):
        b.stage = f"conv{n}"
        b.add(f"features.{i}", "conv2d", out_channels=out, kernel=kernel, stride=stride, padding=padding,
              groups=g, bias=True)
        b.add(f"features.{i + 1}", "relu")
        i += 2
        if lrn and n in NORMED:
            b.add(f"features.{i}", "lrn", **lrn)
            i += 1
        if n in POOLED:
            b.add(f"features.{i}", "maxpool2d", kernel=3, stride=2)
            i += 1
    b.stage = "fc6"
    if avgpool:
        b.add("avgpool", "adaptive_avgpool2d", output_size=6)
    return classifier(b, (1, 4, 6))


register("alexnet", build_alexnet, 224, torchvision="alexnet", family="alexnet",
         paper={"source": PAPER, "note": "torchvision's one-GPU variant (64/192/384/256/256 channels), "
                "not the paper's 96/256/384/384/256; no local response normalization"})
register("alexnet_paper", build_alexnet, 227, family="alexnet", convs=ORIGINAL, avgpool=False, lrn=PAPER_LRN,
         paper={"source": PAPER, "params": 60e6, "top1": 59.3,
                "note": "the paper's table on one device (no grouping); 227x227 input gives 55x55x96 after conv1 "
                "(the paper's '224' does not); local response normalization (size 5) after conv1 and conv2, "
                "5 + 4 ops per element, no weights; "
                "top-1 = 100 - 40.7% error of one CNN on ILSVRC-2012 val"})
register("alexnet_paper_2gpu", build_alexnet, 227, family="alexnet", convs=ORIGINAL, groups=(1, 2, 1, 2, 2),
         avgpool=False, lrn=PAPER_LRN,
         paper={"source": PAPER, "params": 60e6, "top1": 59.3,
                "note": "the paper's two-GPU split: conv2, conv4, conv5 see only their own GPU's half "
                "(groups=2); conv3 and the fc layers connect across GPUs"})
