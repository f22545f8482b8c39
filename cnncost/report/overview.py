"""The overview report: the lecture's families side by side, accuracy against cost."""
from __future__ import annotations

from pathlib import Path

from cnncost import analyze
from cnncost.catalog import layer_depth
from cnncost.report.markdown import image, table
from cnncost.figures import pyplot, save
from cnncost.specs import resolve

LECTURE = ("alexnet", "vgg16", "googlenet", "resnet34", "resnet50", "resnext50_32x4d", "densenet121",
           "densenet169", "densenet201", "densenet264", *(f"efficientnet_b{k}" for k in range(8)))


def torchvision_metrics(name: str) -> dict:
    """top-1 / top-5 (%) of torchvision's default weights, read from its metadata (no download)."""
    entry = resolve(name)
    if not entry.torchvision:
        return {"tv_top1_pct": None, "tv_top5_pct": None}
    from torchvision.models import get_model_weights
    metrics = get_model_weights(entry.torchvision).DEFAULT.meta["_metrics"]["ImageNet-1K"]
    return {"tv_top1_pct": metrics["acc@1"], "tv_top5_pct": metrics["acc@5"]}


def overview_row(name: str) -> dict:
    """One model's totals (exact, from the analytic spec) with accuracy and MACs per top-1 point."""
    result, entry = analyze(name), resolve(name)
    row = {"model": name, "input_px": entry.resolution, "params": result.total("params"),
           "core_macs": result.core_macs, "activations": result.total("activations"), "depth": layer_depth(result.table),
           **torchvision_metrics(name), "paper_top1_pct": entry.paper.get("top1")}
    top1 = row["tv_top1_pct"]
    row["core_macs_per_top1_point"] = round(row["core_macs"] / top1) if top1 else None
    return row


def rows(models=LECTURE) -> list[dict]:
    """The overview table."""
    return [overview_row(m) for m in models]


def plot(data: list[dict], path: Path) -> None:
    """Top-1 against GMACs (log), bubble area proportional to parameters."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    shown = [r for r in data if r["tv_top1_pct"]]
    ax.scatter([r["core_macs"] / 1e9 for r in shown], [r["tv_top1_pct"] for r in shown],
               s=[r["params"] / 2e5 for r in shown], alpha=0.5, color="tab:blue", edgecolor="black")
    for r in shown:
        ax.annotate(r["model"], (r["core_macs"] / 1e9, r["tv_top1_pct"]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set(xlabel="core GMACs per image (conv + linear)", ylabel="ImageNet top-1 % (torchvision weights)",
           title="Accuracy against cost (bubble area ~ parameters)")
    save(fig, path)


def report(out: Path) -> str:
    """reports/overview.md, with its plot."""
    data = rows()
    plot(data, out / "figures" / "overview_accuracy_vs_gmacs.png")
    return (
        "# Overview: the lecture's families side by side\n\n"
        "Exact analytic counts at each model's own input size (batch 1); core MACs = conv + linear "
        "(the papers' \"FLOPs\" and torchvision's `_ops`). Top-1/top-5 are torchvision's published "
        "ImageNet-1K accuracies for its default weights (`tv_`), beside the paper's own figure where the "
        "spec records one (`paper_`). DenseNet-264 is not in torchvision, so it has no accuracy here. "
        "`depth` counts weight layers on the longest path.\n\n"
        + table(data) + "\n"
        "Exact integers:\n\n" + table([{k: r[k] for k in ("model", "params", "core_macs", "activations")}
                                        for r in data], human=False)
        + "\n" + image("figures/overview_accuracy_vs_gmacs.png", "accuracy against GMACs")
    )
