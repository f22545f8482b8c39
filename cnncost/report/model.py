"""One report per model: stages, costliest layers, op mix, and a roofline against an H100."""
from __future__ import annotations

from pathlib import Path

from cnncost import analyze
from cnncost.bench.devices import by_key
from cnncost.catalog import layer_depth, stage_rows
from cnncost.formulas import CORE
from cnncost.report.markdown import image, table
from cnncost.figures import plain_log_axes, pyplot, save
from cnncost.result import Result

ROOF_DEVICE, ROOF_DTYPE, ROOF_BATCH = "h100-sxm", "bf16", 256
COLORS = {"conv": "tab:blue", "linear": "tab:purple", "norm": "tab:green", "activation": "tab:orange",
          "pool": "tab:brown", "elementwise": "tab:red", "other": "tab:gray"}


def share(part: int, whole: int) -> float:
    """part / whole in percent, one decimal."""
    return round(100 * part / whole, 1) if whole else 0.0


SAME = ("kind", "in_shape", "out_shape", "kernel", "stride", "groups", "params", "macs")  # what makes layers alike


def pattern(names: list[str]) -> str:
    """One name for alike layers: the dotted parts where they differ as '*' (layer3.1.conv2, layer3.2.conv2 ->
    layer3.*.conv2); names of different lengths are the first and how many more."""
    if len(names) == 1:
        return names[0]
    parts = [n.split(".") for n in names]
    if len({len(p) for p in parts}) > 1:
        return f"{names[0]} and {len(names) - 1} more"
    return ".".join(column[0] if len(set(column)) == 1 else "*" for column in zip(*parts))


def costliest(result: Result, n: int = 10) -> list[dict]:
    """The n costliest layers by MACs, identical layers (same kind, shapes, hyper-parameters) as one row with
    their count; share_pct: all of them together, of the model's MACs."""
    total = result.total("macs")
    groups = result.table.groupby(list(SAME), sort=False, dropna=False).name.agg(list).reset_index()
    top = groups.sort_values("macs", ascending=False, kind="stable").head(n)
    return [{"layer": pattern(r.name), "count": len(r.name), "kind": r.kind, "in": r.in_shape, "out": r.out_shape,
             "kernel": r.kernel, "stride": r.stride, "groups": r.groups, "params": r.params, "macs": r.macs,
             "share_pct": share(len(r.name) * r.macs, total)} for r in top.itertuples()]


def depth_note(result: Result) -> str:
    """What 'depth' counts, in this model's numbers: weight layers on the longest path, and those beside it."""
    core = result.table[result.table.category.isin(CORE)]
    deep, shortcuts = layer_depth(result.table), int(core.name.str.contains("downsample", regex=False).sum())
    beside = len(core) - deep
    what = f"depth {deep} = weight layers (conv, linear) on the longest path from input to output"
    if not beside:
        return f"{what}: all {len(core)} of them"
    branches = beside - shortcuts
    kinds = {"projection shortcuts (downsample)": shortcuts, "in parallel branches": branches}
    said = [k if n == beside else f"{n} {k}" for k, n in kinds.items() if n]
    return f"{what}; its other {beside} of {len(core)} weight layers are {' and '.join(said)} beside that path"


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
    """Layers on an H100 roofline: intensity against attainable TFLOP/s (the bound, not a measurement), area ~ MACs;
    the ridge point marked where the bandwidth slope meets the compute peak."""
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
    ax.axvline(ridge, color="black", ls=":", lw=1)
    ax.plot([ridge], [peak], marker="D", color="black", ms=5, ls="none",
            label=f"ridge point: {ridge:.0f} FLOP/byte, {peak:g} TFLOP/s")
    for text, shift, align in (("memory-bound", -4, "right"), ("compute-bound", 4, "left")):
        ax.annotate(text, (ridge, 0.03), xycoords=("data", "axes fraction"), xytext=(shift, 0),
                    textcoords="offset points", ha=align, fontsize=7)
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP/byte, bf16)",
           ylabel="attainable TFLOP/s (the roof's bound)",
           title=f"{title} on the {device.name} roofline ({ROOF_DTYPE}, batch {ROOF_BATCH})")
    plain_log_axes(ax, minor_ticks=False)
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
        f"{t['bias_adds']:,}; activations {t['activations']:,} elements; {depth_note(result)}. Every total is "
        "the sum of the rows below.\n\n"
        "## Per stage\n\n" + table(stages) + "\n"
        + image(f"../figures/{name}_stages.png", "parameters and MACs per stage") + "\n"
        "## The costliest layers\n\n"
        "Identical layers (same kind, shapes and hyper-parameters) are one row: `count` of them, `*` where their "
        "names differ; params and macs are each layer's, share_pct all of them together.\n\n"
        + table(costliest(result)) + "\n"
        "## Mix by op category\n\n" + table(category_mix(result)) + "\n"
        "## Roofline\n\n"
        f"Bytes moved per layer at bf16 (inputs + weights read, outputs written) against an "
        f"{by_key(ROOF_DEVICE).name}: ridge point {ridge:.0f} FLOP/byte. Layers left of the ridge are "
        f"memory-bound: they hold {memory_bound_pct(single, ridge)}% of the MACs at batch 1 (weights read for "
        f"one image) and {memory_bound_pct(points, ridge)}% at batch {ROOF_BATCH} (plotted).\n\n"
        + image(f"../figures/{name}_roofline.png", "roofline")
    )
