"""Our tracer's time against torch.utils.flop_counter.FlopCounterMode's, on the meta device, model by model.

Both count the same module (built once on meta, eval mode) on the same meta input: ours is
``cnncost.trace.counter.count_module`` (every aten op costed, rows per module call), torch's is one forward under
``FlopCounterMode(display=False)``. Each is timed `--repeat` times (taking turns, so a change of the machine's
load falls on both) after one warm-up; the best time is kept, and the ratio ours / torch is printed (the goal is
<= 1.0). The conv + linear MACs of both are printed too, so the two are seen to count the same work.

Run: .venv/bin/python benchmarks/bench_trace_vs_torch.py [--models resnet50 vit_b_16 ...] [--repeat 5]
"""
from __future__ import annotations

import argparse
import time

MODELS = ["resnet50", "vit_b_16", "convnext_tiny", "efficientnet_b0", "swin_t", "r3d_18", "fcn_resnet50",
          "timm:convnext_tiny", "timm:vit_tiny_patch16_224", "timm:tf_efficientnet_b0"]


def best_times(counts: list, repeat: int) -> list[float]:
    """The fastest of `repeat` timed calls of each counter, after one warm-up call each; the counters take turns,
    so a change in the machine's load falls on both."""
    for count in counts:
        count()
    times = [[] for _ in counts]
    for _ in range(repeat):
        for count, taken in zip(counts, times):
            start = time.perf_counter()
            count()
            taken.append(time.perf_counter() - start)
    return [min(t) for t in times]


def measure(name: str, repeat: int) -> dict:
    """Both counters on one model: best times, their ratio and each one's conv + linear MACs."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from cnncost.trace.counter import count_module
    from cnncost.trace.models import load
    source = load(name)
    model = source.build("meta").eval()
    x = source.input(1, None, "meta")
    inputs = x if isinstance(x, tuple) else (x,)
    totals = {}

    def ours():
        totals["ours"] = count_module(model, x, name).core_macs

    def torchs():
        with FlopCounterMode(display=False) as mode, torch.no_grad():
            model(*inputs)
        totals["torch"] = mode.get_total_flops() // 2

    t_ours, t_torch = best_times([ours, torchs], repeat)
    return {"model": name, "ours_ms": round(1000 * t_ours, 1), "torch_ms": round(1000 * t_torch, 1),
            "ratio": round(t_ours / t_torch, 2), "ours_core_macs": totals["ours"], "torch_core_macs": totals["torch"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--repeat", type=int, default=5, help="Timed runs per counter (best kept).")
    args = parser.parse_args()
    rows = []
    for name in args.models:
        try:
            rows.append(measure(name, args.repeat))
        except Exception as e:  # noqa: BLE001 - a model that fails is a row with its error
            rows.append({"model": name, "error": f"{type(e).__name__}: {e}"[:120]})
        print(rows[-1], flush=True)
    ratios = [r["ratio"] for r in rows if "ratio" in r]
    print(f"\nours / FlopCounterMode on meta: {min(ratios):.2f} to {max(ratios):.2f} (goal <= 1.0)"
          if ratios else "\nno model could be timed")


if __name__ == "__main__":
    main()
