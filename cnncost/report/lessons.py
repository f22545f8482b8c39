"""The lecture's lessons recomputed: bottleneck, cardinality, dense concatenation, compound scaling."""
from __future__ import annotations

from pathlib import Path

from cnncost.catalog import comparison
from cnncost.formulas import conv2d
from cnncost.report import bottleneck
from cnncost.report.markdown import image, table
from cnncost.figures import pyplot, save
from cnncost.result import Result
from cnncost.scaling import published, series
from cnncost.specs import Builder, build
from cnncost.specs.resnet import build_resnet

# The ResNeXt paper's Table 2: cardinality C and bottleneck width d at about the same complexity.
CARDINALITY = ((1, 64), (2, 40), (4, 24), (8, 14), (32, 4))


def cardinality_rows() -> list[dict]:
    """conv2 block (256 -> C*d -> C*d (groups C) -> 256 on 56x56) and the whole ResNeXt-50 for each C x d."""
    rows = []
    for c, d in CARDINALITY:
        x = (1, 256, 56, 56)
        convs = [conv2d(x, c * d, 1), conv2d((1, c * d, 56, 56), c * d, 3, padding=1, groups=c),
                 conv2d((1, c * d, 56, 56), 256, 1)]
        whole = Result.from_spec(build_resnet(Builder(f"resnext50_{c}x{d}d", (1, 3, 224, 224)), depth=50, groups=c,
                                              width_per_group=d))
        rows.append({"cardinality": c, "width_d": d, "group_width": c * d,
                     "block_params": sum(k.params for k in convs), "block_macs": sum(k.macs for k in convs),
                     "model_params": whole.total("params"), "model_core_macs": whole.core_macs})
    return rows


def cardinality_section() -> str:
    """ResNet-50 against ResNeXt-50 at the same budget."""
    totals, stages = comparison(["resnet50", "resnext50_32x4d"])
    keep = ("model", "params", "core_macs", "activations", "depth", "published_params", "published_macs")
    return (
        "## 2. ResNet against ResNeXt at the same budget\n\n"
        "ResNeXt replaces the bottleneck's 3x3 conv by a grouped one (32 groups of 4 channels in conv2) and "
        "widens the block so the cost stays put. A conv2 block's parameters are "
        "256·C·d + 3·3·C·d·d + C·d·256 (the middle conv sees C·d/C = d input channels per group), "
        "so C and d can trade against each other (the ResNeXt paper's Table 2; the paper's figures "
        "ignore batch norm and count ~70k parameters and ~0.22 G MACs per block):\n\n"
        + table(cardinality_rows()) + "\n"
        "The lecture's table, recomputed stage by stage (`cnncost compare resnet50 resnext50`):\n\n"
        + table([{k: r.get(k) for k in keep} for r in totals]) + "\n" + table(stages) + "\n"
    )


def dense_rows(model: str = "densenet121") -> list[dict]:
    """Per dense block: layers, channels in and out, activations written, bytes read by concatenations."""
    t = Result.from_spec(build(model)).table
    rows = []
    for block in (s for s in t.stage.unique() if s.startswith("denseblock")):
        mine = t[t.stage == block]
        cats = mine[mine.kind == "concat"]
        rows.append({"block": block, "dense_layers": len(cats) - 1, "channels_in": int(cats.out_shape.iloc[0].split("x")[1]),
                     "channels_out": int(cats.out_shape.iloc[-1].split("x")[1]),
                     "map": "x".join(cats.out_shape.iloc[0].split("x")[2:]),
                     "activations": int(mine.activations.sum()), "concat_bytes_read_fp32": int(cats.bytes_read.sum()),
                     "conv_macs": int(mine[mine.category == "conv"].macs.sum())})
    return rows


def dense_plot(model: str, path: Path) -> None:
    """Channels entering each dense layer (they grow by k = 32 per layer) and the concat bytes read."""
    t = Result.from_spec(build(model)).table
    cats = t[(t.kind == "concat") & t.name.str.contains("denselayer")]
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    for block in cats.stage.unique():
        mine = cats[cats.stage == block]
        left.plot(range(1, len(mine) + 1), [int(s.split("x")[1]) for s in mine.out_shape], label=block)
        right.plot(range(1, len(mine) + 1), mine.bytes_read.cumsum() / 2**20, label=block)
    left.set(xlabel="dense layer", ylabel="channels concatenated", title=f"{model}: input channels per layer")
    right.set(xlabel="dense layer", ylabel="MiB read (fp32, cumulative)", title="bytes read by torch.cat")
    left.legend(fontsize=7)
    save(fig, path)


def dense_section(figures: Path) -> str:
    """DenseNet's concatenation: memory grows with every layer."""
    dense_plot("densenet121", figures / "densenet121_concat.png")
    rows = [{"model": m, **r} for m in ("densenet121", "densenet264") for r in dense_rows(m)]
    return (
        "## 3. DenseNet's concatenation\n\n"
        "Each dense layer sees the concatenation of everything before it in its block: layer l of a block "
        "reads k0 + (l - 1)·k channels (growth k = 32), through a 1x1 bottleneck to 4k = 128 channels, then "
        "a 3x3 conv to k. Parameters stay small, but torchvision's layer concatenates its inputs again "
        "(`torch.cat` in `bn_function`) so the bytes read grow quadratically with the block's length:\n\n"
        + table(rows) + "\n" + image("figures/densenet121_concat.png", "DenseNet concatenation") + "\n"
        "What these concatenations hold in memory during training, and what `memory_efficient=True` saves in "
        "bytes and costs in recomputed MACs: [training.md](training.md#densenet-what-the-concatenations-hold).\n"
    )


def scaling_section() -> str:
    """EfficientNet's compound scaling: predicted 2^phi against the exact count."""
    keep = lambda rows: [{k: v for k, v in r.items() if k != "base"} for r in rows]  # noqa: E731
    return (
        "## 4. EfficientNet's compound scaling\n\n"
        "Depth x alpha^phi, width x beta^phi, resolution x gamma^phi with alpha = 1.2, beta = 1.1, gamma = 1.15 "
        "(alpha·beta²·gamma² ≈ 1.92 ≈ 2): MACs should grow as (alpha·beta²·gamma²)^phi. The exact count of the "
        "scaled B0 table drifts from the prediction because channels round to multiples of 8, repeats round up, "
        "the input size is an integer, and depthwise convs, the stem and the classifier grow with w, not w². "
        "Compound scaling of B0 (`cnncost scale --phi 0 ... --phi 7`):\n\n"
        + table(keep(series("efficientnet_b0", range(8)))) + "\n"
        "The published B1..B7, whose multipliers and resolutions were hand-set rather than taken from phi "
        "(`cnncost scale --published`):\n\n" + table(keep(published("efficientnet_b0"))) + "\n"
    )


def report(out: Path) -> str:
    """reports/lessons.md."""
    return ("# The lecture's lessons, recomputed\n\n" + bottleneck.section(out / "figures").replace("## 1.", "## 1.")
            + "\n" + cardinality_section() + "\n" + dense_section(out / "figures") + "\n" + scaling_section())
