"""Lesson 1: the 1x1 bottleneck, and how its saving moves with the reduction width."""
from __future__ import annotations

from pathlib import Path

from cnncost.bottleneck import compare_bottleneck
from cnncost.report.markdown import image, table
from cnncost.figures import pyplot, save

WIDTHS = (4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 343, 384, 480)


def sweep(widths=WIDTHS) -> list[dict]:
    """The lecture's 5x5 480 -> 48 on 14x14, reduced through each width."""
    rows = []
    for width in widths:
        r = compare_bottleneck(reduce=width)
        rows.append({"reduce_channels": width, "reduced_macs": r["reduced"]["macs"],
                     "direct_macs": r["direct"]["macs"], "saving_x": round(r["macs_ratio"], 2),
                     "reduced_params": r["reduced"]["params"]})
    return rows


def section(figures: Path) -> str:
    """Markdown for the bottleneck lesson, with its plot written into figures/."""
    base = compare_bottleneck()
    steps = base["reduced"]["steps"]
    rows = sweep()
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["reduce_channels"] for r in rows], [r["reduced_macs"] / 1e6 for r in rows], marker="o",
            label="1x1 reduce then 5x5")
    ax.axhline(base["direct"]["macs"] / 1e6, color="crimson", label="direct 5x5")
    ax.set(xlabel="reduction width (channels)", ylabel="MMACs", title="5x5 conv 480->48 on 14x14")
    ax.legend()
    save(fig, figures / "bottleneck_sweep.png")
    # Break-even width r: r*480*14*14 + r*25*48*14*14 = 25*480*48*14*14  ->  r = 25*480*48 / (480 + 25*48)
    break_even = 25 * 480 * 48 / (480 + 25 * 48)
    return (
        "## 1. The 1x1 bottleneck\n\n"
        "A 5x5 convolution from 480 to 48 channels on a 14x14 map (Inception-v1's 4a block):\n\n"
        f"- direct: {base['direct']['arithmetic']} MACs, {base['direct']['params']:,} weights\n"
        f"- 1x1 to 16 first: {steps[0]['arithmetic']} plus {steps[1]['arithmetic']}, "
        f"total {base['reduced']['macs']:,} MACs, {base['reduced']['params']:,} weights\n"
        f"- saving: {base['macs_ratio']:.1f}x in MACs and {base['params_ratio']:.1f}x in weights "
        "(the same ratio, since every conv here runs on the same 14x14 grid)\n\n"
        "How the saving moves with the reduction width: the reduced path costs "
        "14 x 14 x r x (480 + 25 x 48) MACs, linear in r, and stops paying at "
        f"r = 25 x 480 x 48 / (480 + 25 x 48) = {break_even:.1f} channels.\n\n"
        + table(rows) + "\n" + image("figures/bottleneck_sweep.png", "bottleneck sweep")
    )
