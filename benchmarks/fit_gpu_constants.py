"""Set predict's GPU constants (cnncost/speed/constants.py) on timm's RTX 3090 AMP inference tables, and only there.

Every model of the nchw and nhwc tables (or every `--every`-th of each family) is traced once at its published
batch and size in fp16 (benchmarks/timm_table.py caches the rows). Each row's work is what predict.work gives on
a GPU; the fit then searches the nine FITTED constants (compute efficiency per tensor class and depthwise, two
bandwidth efficiencies, autocast's two traffic factors) that minimise the mean squared log error of predicted
latency, both layouts at once, with the RTX 3090's data sheet (cnncost devices) as the peaks and predict's own
arithmetic. It prints the constants to copy into constants.py and the fit's accuracy beside 1/MACs' (best
scale). The stated constants (TENSOR_CORE_ALIGN, KERNEL_FIXED_S, LAUNCH_S) are not searched: the batch-1024 tables
cannot tell them apart. No other published throughput is read.

Run: .venv/bin/python benchmarks/fit_gpu_constants.py [--timm-dir DIR] [--every N]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import timm_table  # noqa: E402

# The fitted constants, in the order of the search vector (each searched as its logarithm).
FITTED = ("conv_dense", "conv_grouped", "conv_depthwise", "matmul", "attention", "NORM_BANDWIDTH_EFFICIENCY",
          "BANDWIDTH_EFFICIENCY", "AUTOCAST_FP32_TRAFFIC", "FP32_STREAM_TRAFFIC")


class Problem:
    """Every row of every model as predict.work sees it, in flat arrays, and the measured latencies."""

    def __init__(self, items):
        from cnncost.speed import predict
        from cnncost.speed.device import OP_CLASSES
        parts = {k: [] for k in ("cls", "flops", "moved", "transposed", "autocast", "stream", "run", "model")}
        self.names, self.measured, self.macs, self.batch = [], [], [], []
        for n, (name, rows, layout, measured_s, macs, batch) in enumerate(items):
            w = predict.work(rows, "cuda", "fp16", channels_last=layout == "nhwc")
            for key, values in (("cls", [OP_CLASSES.index(c) for c in w.classes]), ("flops", w.flops),
                                ("moved", w.moved), ("transposed", w.transposed), ("autocast", w.autocast_fp32),
                                ("stream", w.fp32_stream), ("run", w.state == "run"),
                                ("model", np.full(len(w.flops), n))):
                parts[key].append(np.asarray(values))
            self.names.append(name)
            self.measured.append(measured_s)
            self.macs.append(macs)
            self.batch.append(batch)
        for key, values in parts.items():
            setattr(self, key, np.concatenate(values))
        self.measured, self.macs = np.array(self.measured), np.array(self.macs, dtype=float)
        self.batch = np.array(self.batch, dtype=float)

    def latency(self, device) -> np.ndarray:
        """Predicted seconds per model with the constants now in cnncost.speed.constants (predict's arithmetic:
        Work.traffic, the data-sheet profile's class rates, predict.roofline, the host floor)."""
        from cnncost.speed import constants, predict
        from cnncost.speed.device import OP_CLASSES, Rate
        profile = constants.datasheet_profile(device)
        rates: list[Rate] = [profile.rate("fp16", c) for c in OP_CLASSES]
        flops_per_s, bytes_per_s, fixed = (np.array([getattr(r, f) for r in rates])[self.cls]
                                           for f in ("flops_per_s", "bytes_per_s", "fixed_s"))
        moved = (self.moved + self.transposed) * np.where(self.autocast, constants.AUTOCAST_FP32_TRAFFIC, 1.0) \
            * np.where(self.stream, constants.FP32_STREAM_TRAFFIC, 1.0)
        t = np.where(self.run, predict.roofline(self.flops, moved, flops_per_s, bytes_per_s, fixed), 0.0)
        device_s = np.bincount(self.model, weights=t, minlength=len(self.measured))
        issued = np.bincount(self.model, weights=self.run.astype(float), minlength=len(self.measured))
        return np.maximum(device_s, issued * profile.launch_s)


def current() -> np.ndarray:
    """The fitted constants now in cnncost.speed.constants, as a search vector."""
    from cnncost.speed import constants
    return np.log([constants.COMPUTE_EFFICIENCY[k] if k in constants.COMPUTE_EFFICIENCY else getattr(constants, k)
                   for k in FITTED])


def apply(x: np.ndarray) -> None:
    """Put a search vector's constants into cnncost.speed.constants (for this process only)."""
    from cnncost.speed import constants
    values = dict(zip(FITTED, np.exp(x)))
    constants.COMPUTE_EFFICIENCY = {k: float(values[k]) for k in constants.COMPUTE_EFFICIENCY}
    for k in FITTED[5:]:
        setattr(constants, k, float(values[k]))


def nelder_mead(f, x0: np.ndarray, steps: float = 0.3, iters: int = 3000, tol: float = 1e-7) -> np.ndarray:
    """Minimise f from x0 with the Nelder-Mead simplex (numpy only)."""
    simplex = [x0] + [x0 + steps * np.eye(len(x0))[i] for i in range(len(x0))]
    values = [f(x) for x in simplex]
    for _ in range(iters):
        order = np.argsort(values)
        simplex, values = [simplex[i] for i in order], [values[i] for i in order]
        if values[-1] - values[0] < tol:
            break
        centre = np.mean(simplex[:-1], axis=0)
        reflected = centre + (centre - simplex[-1])
        fr = f(reflected)
        if fr < values[0]:
            expanded = centre + 2 * (centre - simplex[-1])
            fe = f(expanded)
            simplex[-1], values[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflected, fr
        else:
            contracted = centre + 0.5 * (simplex[-1] - centre)
            fc = f(contracted)
            if fc < values[-1]:
                simplex[-1], values[-1] = contracted, fc
            else:
                simplex = [simplex[0]] + [simplex[0] + 0.5 * (s - simplex[0]) for s in simplex[1:]]
                values = [values[0]] + [f(s) for s in simplex[1:]]
    return simplex[int(np.argmin(values))]


def load(layouts, folder, every: int):
    """(name, rows, layout, measured seconds per batch, our MACs per image, batch) for every traced model of the
    tables."""
    items = []
    for layout in layouts:
        table = timm_table.read(layout, folder)
        table = table[table.model.isin(timm_table.sample(list(table.model.unique()), every))]
        traced = timm_table.trace_all(table)
        for row in table.itertuples():
            rows = traced[row.model, row.size, row.batch]
            if isinstance(rows, str) or rows.attrs.get("unsupported"):
                continue
            items.append((f"{row.model}@{row.size}/{layout}", rows, layout, row.batch / row.img_per_s,
                          rows.macs.sum() / row.batch, row.batch))
    return items


def report(problem: Problem, latency: np.ndarray, label: str) -> None:
    """Accuracy of predicted img/s per layout, beside 1/MACs with its best scale."""
    from cnncost.speed.accuracy import describe, with_baseline
    for layout in ("nchw", "nhwc"):
        keep = np.array([n.endswith(layout) for n in problem.names])
        if keep.any():
            batch = problem.batch[keep]
            figures = with_baseline(batch / latency[keep], batch / problem.measured[keep], problem.macs[keep])
            print(f"{label} {layout}: {describe(figures['predict'])}")
            print(f"{'1/MACs':>{len(label)}} {layout}: {describe(figures['1/MACs'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timm-dir", default=None, help=f"folder of the RTX 3090 tables ({timm_table.DEFAULT_DIR})")
    parser.add_argument("--every", type=int, default=1, help="fit on every N-th model of each family")
    args = parser.parse_args()
    from cnncost.bench.devices import by_key
    device = by_key("rtx3090")
    problem = Problem(load(("nchw", "nhwc"), args.timm_dir, args.every))
    print(f"{len(problem.names)} (model, layout) cases, {len(problem.cls):,} rows")
    report(problem, problem.latency(device), "current constants")

    def loss(x):
        apply(x)
        return float(np.mean(np.log(problem.latency(device) / problem.measured) ** 2))
    best = nelder_mead(loss, current())
    apply(best)
    report(problem, problem.latency(device), "fitted constants")
    for name, value in zip(FITTED, np.exp(best)):
        print(f"  {name} = {value:.3g}")


if __name__ == "__main__":
    main()
