"""One report per model: stages, costliest layers, op mix, and a roofline against an H100."""
from __future__ import annotations

from pathlib import Path

from cnncost import analyze
from cnncost.bench.devices import by_key
from cnncost.catalog import layer_depth, stage_rows
from cnncost.report.markdown import image, table
from cnncost.figures import pyplot, save
from cnncost.result import Result

ROOF_DEVICE, ROOF_DTYPE, ROOF_BATCH = "h100-sxm", "bf16", 256
COLORS = {"conv": "tab:blue", "linear": "tab:purple", "norm": "tab:green", "activation": "tab:orange",
          "pool": "tab:brown", "elementwise": "tab:red", "other": "tab:gray"}


def share(part: int, whole: int) -> float:
    """part / whole in percent, one decimal."""
    return round(100 * part / whole, 1) if whole else 0.0


def costliest(result: Result, n: int = 10) -> list[dict]:
    """The n layers with the most MACs, with their share of the model."""
    total = result.total("macs")
    top = result.table.nlargest(n, "macs", keep="first")
    return [{"layer": r.name, "kind": r.kind, "in": r.in_shape, "out": r.out_shape, "kernel": r.kernel,
             "stride": r.stride, "groups": r.groups, "params": r.params, "macs": r.macs,
             "share_pct": share(r.macs, total)} for r in top.itertuples()]


def category_mix(result: Result) -> list[dict]:
    """MACs and bytes moved per op category."""
    by = result.by("category").set_index("category")
    total = result.total("macs")
    return [{"category": c, "layers": int(by.at[c, "layers"]), "macs": int(by.at[c, "macs"]),
             "macs_share_pct": share(int(by.at[c, "macs"]), total),
             "bytes_moved": int(by.at[c, "bytes_read"] + by.at[c, "bytes_written"])}
            for c in by.index]


def roofline(result: Result) -> tuple[list[dict], float]:
    """Per layer with work: intensity and the attainable TFLOP/s under the roof; and the ridge point."""
    device = by_key(ROOF_DEVICE)
    peak, bandwidth = device.peak_tflops(ROOF_DTYPE) * 1e12, device.bandwidth_gb_s * 1e9
    layers = result.by("layer")
    layers = layers[layers.macs > 0]
    points = [{"name": r.name, "category": r.category, "macs": int(r.macs),
               "intensity": float(r.intensity_flop_per_byte),
               "attainable_tflops": min(peak, bandwidth * r.intensity_flop_per_byte) / 1e12}
              for r in layers.itertuples()]
    return points, peak / bandwidth


def memory_bound_pct(points: list[dict], ridge: float) -> float:
    """Share of MACs in layers whose intensity is below the ridge point."""
    return share(sum(p["macs"] for p in points if p["intensity"] < ridge), sum(p["macs"] for p in points))


def plot_stages(stages: list[dict], path: Path, title: str) -> None:
    """Parameters and core MACs per stage, side by side."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    names = [s["stage"] for s in stages]
    left.bar(names, [s["params"] / 1e6 for s in stages], color="tab:green")
    right.bar(names, [s["core_macs"] / 1e9 for s in stages], color="tab:blue")
    left.set(ylabel="parameters (M)", title=f"{title}: parameters per stage")
    right.set(ylabel="core GMACs", title=f"{title}: core MACs per stage")
    for ax in (left, right):
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    save(fig, path)


def plot_roofline(points: list[dict], ridge: float, path: Path, title: str) -> None:
    """Layers on an H100 roofline: intensity against attainable TFLOP/s, area ~ MACs."""
    device = by_key(ROOF_DEVICE)
    peak = device.peak_tflops(ROOF_DTYPE)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [0.01, ridge, 1e4]
    ax.plot(xs, [min(peak, device.bandwidth_gb_s * x / 1e3) for x in xs], color="black", lw=1)
    biggest = max(p["macs"] for p in points)
    for category in COLORS:
        mine = [p for p in points if p["category"] == category]
        if mine:
            ax.scatter([p["intensity"] for p in mine], [p["attainable_tflops"] for p in mine],
                       s=[8 + 200 * p["macs"] / biggest for p in mine], alpha=0.5, color=COLORS[category],
                       label=category)
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP/byte, bf16)",
           ylabel="attainable TFLOP/s", title=f"{title} on the {device.name} roofline ({ROOF_DTYPE}, batch {ROOF_BATCH})")
    ax.legend(fontsize=7)
    save(fig, path)


def report(name: str, out: Path) -> str:
    """reports/models/<name>.md with its two figures."""
    result = analyze(name)
    stages = stage_rows(result)
    single, ridge = roofline(analyze(name, dtype=ROOF_DTYPE))
    points, _ = roofline(analyze(name, batch=ROOF_BATCH, dtype=ROOF_DTYPE))
    plot_stages(stages, out / "figures" / f"{name}_stages.png", name)
    plot_roofline(points, ridge, out / "figures" / f"{name}_roofline.png", name)
    t = result.totals()
    return (
        f"# {name}\n\n"
        f"Input {'x'.join(map(str, result.input_shape))} (NCHW). Parameters {t['params']:,}; core MACs "
        f"(conv + linear) {t['core_macs']:,}; all MACs {t['macs']:,} (= {2 * t['macs']:,} FLOPs); bias adds "
        f"{t['bias_adds']:,}; activations {t['activations']:,} elements; depth {layer_depth(result.table)} weight "
        "layers. Every total is the sum of the rows below.\n\n"
        "## Per stage\n\n" + table(stages) + "\n"
        + image(f"../figures/{name}_stages.png", "parameters and MACs per stage") + "\n"
        "## The ten costliest layers\n\n" + table(costliest(result)) + "\n"
        "## Mix by op category\n\n" + table(category_mix(result)) + "\n"
        "## Roofline\n\n"
        f"Bytes moved per layer at bf16 (inputs + weights read, outputs written) against an "
        f"{by_key(ROOF_DEVICE).name}: ridge point {ridge:.0f} FLOP/byte. Layers left of the ridge are "
        f"memory-bound: they hold {memory_bound_pct(single, ridge)}% of the MACs at batch 1 (weights read for "
        f"one image) and {memory_bound_pct(points, ridge)}% at batch {ROOF_BATCH} (plotted).\n\n"
        + image(f"../figures/{name}_roofline.png", "roofline")
    )
