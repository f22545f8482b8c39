"""reports/training.md: one training step per lecture model, traced on meta: MACs per image against inference,
memory against batch, the largest batch per GPU, the 90-epoch ImageNet-1k cost; and DenseNet's memory lesson."""
from __future__ import annotations

from functools import partial
from pathlib import Path

from cnncost.figures import pyplot, save
from cnncost.report.markdown import image, table

DEVICES = ("h100-sxm", "a100-40gb", "rtx4090")
DTYPE, OPTIMIZER = "bf16", "sgd"  # the usual recipe: mixed precision, SGD with momentum
PLOT_BATCHES = (16, 64, 256)
GIB = 2**30
# What the bars stack: bytes live at the step's peak, by what they hold.
PARTS = (("params", "parameters"), ("grads", "gradients"), ("optimizer_state", "momentum"),
         ("activations", "saved activations"), ("temporaries", "temporaries"), ("inputs", "batch"))
COLORS = ("tab:green", "tab:olive", "tab:purple", "tab:blue", "tab:orange", "tab:gray")
LESSON_BATCH = 64


def cost_row(name: str) -> dict:
    """MACs per image (inference and a traced training step, core and all categories) and the 90-epoch cost."""
    from cnncost.bench.traincost import train_cost
    cost = train_cost(name, per_kind=False)
    s, at_mfu = cost.summary(), cost.estimates[-1]
    return {"model": name, "size": s["size"], "inference_core_macs": s["forward_macs_per_image"],
            "train_core_macs": s["train_macs_per_image"], "train_factor": s["train_factor"],
            "train_all_macs": s["all_categories_train_macs_per_image"],
            "epochs90_train_macs_1e18": round(s["total_train_macs"] / 1e18, 3),
            "h100_hours_at_mfu": at_mfu["gpu_hours"]}


def memory_rows(peaks) -> list[dict]:
    """Bytes live at the step's peak by part (buffers with the parameters), per plotted batch."""
    rows = []
    for batch in PLOT_BATCHES:
        t = peaks.at_peak(batch)
        parts = {part: t[f"peak_{part}_bytes"] for part, _ in PARTS}
        parts["params"] += t["peak_buffers_bytes"]
        rows.append({"batch": batch, **parts, "peak": t["peak_bytes"]})
    return rows


def in_mib(rows: list[dict]) -> list[dict]:
    """Byte columns as MiB (one decimal) for the page; the unit in the names."""
    return [{k if k == "batch" else f"{k}_mib": v if k == "batch" else round(v / 2**20, 1) for k, v in r.items()}
            for r in rows]


def plot_memory(rows: list[dict], path: Path, title: str) -> None:
    """Stacked bars: what the peak holds at each batch, in GiB."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    labels, bottom = [str(r["batch"]) for r in rows], [0.0] * len(rows)
    for (part, label), color in zip(PARTS, COLORS):
        heights = [r[part] / GIB for r in rows]
        ax.bar(labels, heights, bottom=bottom, label=label, color=color)
        bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set(xlabel="batch", ylabel="GiB at the peak", title=f"{title}: training-step memory ({DTYPE} AMP, SGD)")
    ax.legend(fontsize=7)
    save(fig, path)


def model_section(name: str, figures: Path) -> tuple[dict, str]:
    """One model: its summary row (MACs, largest batches, 90-epoch cost) and its memory plot."""
    from cnncost.trace.memory import BatchPeaks
    peaks = BatchPeaks(name, dtype=DTYPE, optimizer=OPTIMIZER, allocator="cuda")
    row = {**cost_row(name), **{f"largest_batch_{d}": peaks.largest(d) for d in DEVICES}}
    rows = memory_rows(peaks)
    plot_memory(rows, figures / f"{name}_train_memory.png", name)
    per_image = (rows[-1]["peak"] - rows[-2]["peak"]) // (PLOT_BATCHES[-1] - PLOT_BATCHES[-2])
    row["mib_per_image"] = round(per_image / 2**20, 1)
    text = (f"### {name}\n\n" + table(in_mib(rows), human=False, floatfmt=".1f")
            + "\n" + image(f"figures/{name}_train_memory.png", f"{name} training memory") + "\n")
    return row, text


def densenet_source(memory_efficient: bool):
    """torchvision's DenseNet-121, plain or with memory_efficient=True (checkpointed bottlenecks)."""
    import torchvision

    from cnncost.trace.sources import ModelSource
    suffix = "_memory_efficient" if memory_efficient else ""
    return ModelSource(f"densenet121{suffix}", partial(torchvision.models.densenet121,
                                                       memory_efficient=memory_efficient))


def concat_rows(saved: dict[str, int], batch: int) -> list[dict]:
    """Per dense block: bytes norm1 saves (the concatenation, and its per-channel mean and inverse std), traced,
    against batch x channels x H x W x 4 + 2 x channels x 4; and what the whole bottleneck saves."""
    blocks = ((1, 6, 64, 56), (2, 12, 128, 28), (3, 24, 256, 14), (4, 16, 512, 7))  # block, layers, k0, map
    rows = []
    for block, layers, k0, side in blocks:
        layer = [f"features.denseblock{block}.denselayer{i}" for i in range(1, layers + 1)]
        traced = sum(saved.get(f"{n}.norm1", 0) for n in layer)
        channels = sum(k0 + 32 * i for i in range(layers))
        rows.append({"block": f"denseblock{block}", "layers": layers, "channels_concatenated": channels,
                     "map": f"{side}x{side}", "traced_norm1_bytes": traced,
                     "derived_norm1_bytes": batch * channels * side * side * 4 + 2 * channels * 4,
                     "bottleneck_saved_bytes": sum(saved.get(f"{n}.{m}", 0) for n in layer
                                                   for m in ("norm1", "relu1", "conv1"))})
    return rows


def conv_flops(source, batch: int = 1) -> int:
    """torch's FlopCounterMode total (conv and matmul FLOPs) over one training step on meta: an independent
    check that checkpointing repeats no conv."""
    from torch.utils.flop_counter import FlopCounterMode

    from cnncost.trace.step import make_optimizer, targets_for, training_step
    model = source.build("meta")
    with FlopCounterMode(display=False) as counter:
        training_step(model, (source.input(batch, 224),), targets_for(batch), make_optimizer(model))
    return counter.get_total_flops()


def densenet_numbers(batch: int = LESSON_BATCH) -> dict:
    """DenseNet-121 plain and checkpointed: memory of a step at a batch, traced MACs per image, torch's FLOPs."""
    from cnncost.trace.memory import predict_memory
    from cnncost.trace.step import targets_for
    from cnncost.trace.train import train_source
    reports, macs, flops = {}, {}, {}
    for efficient in (False, True):
        source = densenet_source(efficient)
        reports[efficient] = predict_memory(source.build("meta"), source.input(batch, 224), targets_for(batch))
        macs[efficient] = train_source(source, batch=1, size=224)
        flops[efficient] = conv_flops(source)
    saved = dict(zip(reports[False].per_module.name, reports[False].per_module.saved_bytes))
    t = macs[False].table
    return {"batch": batch, "concat": concat_rows(saved, batch), "saved": {e: r.totals["saved_activations_bytes"]
                                                                          for e, r in reports.items()},
            "compare": [{"variant": f"memory_efficient={e}",
                         "saved_activations_bytes": r.totals["saved_activations_bytes"],
                         "peak_bytes": r.totals["peak_bytes"], "step_macs_at_batch_1": macs[e].totals()["train_macs"],
                         "torch_flop_counter_flops_per_image": flops[e]} for e, r in reports.items()],
            "extra_macs": macs[True].totals()["train_macs"] - macs[False].totals()["train_macs"],
            "norm1_relu1_forward_macs": int(t[t.name.str.endswith((".norm1", ".relu1"))].forward_macs.sum())}


def densenet_lesson(batch: int = LESSON_BATCH) -> str:
    """What the concatenations hold in memory and what checkpointing them saves and costs."""
    n = densenet_numbers(batch)
    concat, compare, extra, recomputed = n["concat"], n["compare"], n["extra_macs"], n["norm1_relu1_forward_macs"]
    held = sum(r["traced_norm1_bytes"] for r in concat)
    bottleneck = sum(r["bottleneck_saved_bytes"] for r in concat)
    saved_bytes = n["saved"][False] - n["saved"][True]
    same = "exactly" if extra == recomputed else "close to"
    same_flops = compare[0]["torch_flop_counter_flops_per_image"] == compare[1]["torch_flop_counter_flops_per_image"]
    return (
        "## DenseNet: what the concatenations hold\n\n"
        f"DenseNet-121 at batch {batch}, 224x224, fp32, SGD (`predict_memory`). Each dense layer concatenates "
        "every earlier feature map of its block (`torch.cat` in `bn_function`) into a new tensor, and batch "
        "norm `norm1` saves that tensor for its backward: layer l of a block with k0 input channels holds "
        "batch x (k0 + 32(l-1)) x H x W x 4 bytes (and norm1 2 x channels x 4 bytes of mean and inverse "
        "std). Then norm1 writes a normalised copy of the same size, which relu1 rectifies in place and conv1 "
        "saves: the bottleneck keeps two tensors as wide as the concatenation. Traced (saved-tensor hooks, per "
        "storage) against the formula:\n\n" + table(concat, human=False) + "\n"
        f"The concatenations hold {held / GIB:.2f} GiB, and the bottlenecks {bottleneck / GIB:.2f} GiB, of the "
        f"{n['saved'][False] / GIB:.2f} GiB saved for backward. "
        "`memory_efficient=True` checkpoints the bottleneck (cat, norm1, relu1, conv1): neither the "
        "concatenation nor its normalised copy is kept; both are rebuilt in backward.\n\n"
        + table(compare, human=False) + "\n"
        f"It saves {saved_bytes / GIB:.2f} GiB of activations ({saved_bytes // batch / 2**20:.1f} MiB per image) "
        f"for {extra:,} extra MACs per image ({100 * extra / compare[0]['step_macs_at_batch_1']:.2f}% of the "
        f"step), {same} the forward of every norm1 and relu1 ({recomputed:,} MACs): torch's checkpoint stops "
        "recomputing as soon as the tensors backward needs exist (early stop), and conv1's output is saved "
        "outside the checkpoint by norm2, so conv1 never runs again"
        + (" and torch's FlopCounterMode counts the same conv FLOPs in both variants.\n" if same_flops else
           "; torch's FlopCounterMode counts different conv FLOPs for the two variants (see the table).\n")
    )


def page(sections: list[tuple[dict, str]], lesson: str) -> str:
    """reports/training.md from each model's (summary row, memory section) and the DenseNet lesson."""
    gib = ", ".join(f"{d}" for d in DEVICES)
    return (
        "# Training: a step traced, not assumed\n\n"
        "One steady-state training step per model (forward, cross-entropy, backward, SGD with momentum) traced "
        "on the meta device: MACs from every aten op of the step (`cnncost train`), memory from every storage "
        "the step allocates and frees (`cnncost.trace.memory`). Memory predictions agree with a real CPU step "
        "measured by torch.profiler within 1.2% (tests/test_memory.py, benchmarks/bench_train_memory.py).\n\n"
        "## Summary\n\n"
        "MACs per image at the model's resolution: inference (conv + linear), a training step (conv + linear; "
        "all categories), and 90 epochs of ImageNet-1k (1,281,167 images, conv + linear, in units of 10^18 "
        "MACs); H100 hours at 30% MFU of its dense "
        f"bf16 peak. Largest batch on {gib}: the largest whose predicted peak ({DTYPE} autocast, SGD with "
        "momentum, CUDA's 512-byte blocks) fits the card's memory; the CUDA context, cuDNN workspaces and "
        "fragmentation are not counted, so leave a GiB or two. mib_per_image: the peak's growth per image.\n\n"
        + table([row for row, _ in sections], floatfmt=".4g") + "\n## Memory against batch\n\n"
        "What the peak holds: parameters (and buffers), gradients present at the peak, momentum, activations "
        "saved for backward, temporaries, the batch itself.\n\n" + "\n".join(text for _, text in sections)
        + "\n" + lesson
    )


def report(out: Path, models=None) -> str:
    """reports/training.md with one memory figure per model."""
    from cnncost.report.overview import LECTURE
    models = LECTURE if models is None else models
    return page([model_section(name, out / "figures") for name in models], densenet_lesson())
