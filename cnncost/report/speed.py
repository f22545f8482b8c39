"""reports/speed.md: time measured per layer on this CPU (cnncost profile) and predicted (cnncost predict), beside
the MACs, and what MACs alone get wrong about speed.

Made from committed files only: results/profile-cpu.csv (benchmarks/bench_profile.py: measured rows, with
predict's time beside the inference rows) and results/predict-accuracy.json (benchmarks/validate_predict.py:
accuracy figures only); the GPU predictions are computed here from the data sheets and the stated constants.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cnncost.report.markdown import image, table

RESULTS = Path("results")
MODES = {"infer": "inference", "train": "training step"}


def measured(results: Path) -> pd.DataFrame | None:
    """The profiled rows, or None when results/ has none."""
    path = results / "profile-cpu.csv"
    return pd.read_csv(path, keep_default_na=False) if path.is_file() else None


def by_kind(rows: pd.DataFrame) -> pd.DataFrame:
    """Share of time against share of MACs per op category, per model and mode."""
    out = []
    for (model, mode), group in rows.groupby(["model", "mode"], sort=False):
        macs, time_ms = group.groupby("category").macs.sum(), group.groupby("category").time_ms.sum()
        total_macs, total_ms = max(int(group.macs.sum()), 1), max(float(group.time_ms.sum()), 1e-12)
        for category in time_ms.sort_values(ascending=False).index:
            out.append({"model": model, "mode": MODES[mode], "category": category,
                        "time_ms": round(float(time_ms[category]), 3),
                        "share_of_time_pct": round(100 * time_ms[category] / total_ms, 1),
                        "share_of_macs_pct": round(100 * macs.get(category, 0) / total_macs, 1)})
    return pd.DataFrame(out)


def shares_plot(kinds: pd.DataFrame, path: Path) -> Path:
    """Bars: share of time and share of MACs per category, one panel per model and mode."""
    from cnncost.figures import pyplot, save
    plt = pyplot()
    panels = list(kinds.groupby(["model", "mode"], sort=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, ((model, mode), group) in zip(axes[0], panels):
        x = range(len(group))
        ax.bar([i - 0.2 for i in x], group.share_of_time_pct, 0.4, label="share of time")
        ax.bar([i + 0.2 for i in x], group.share_of_macs_pct, 0.4, label="share of MACs")
        ax.set_xticks(list(x), group.category, rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{model}, {mode}", fontsize=9)
        ax.set_ylabel("%")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def roofline_plot(rows: pd.DataFrame, profile, path: Path) -> Path:
    """This CPU's roofline (peak FLOP/s, bandwidth, the ridge marked) with each inference layer's measured
    achieved FLOP/s at its arithmetic intensity."""
    import numpy as np

    from cnncost.figures import pyplot, save
    plt = pyplot()
    peak, bandwidth = profile.peak_flops["fp32"], profile.bandwidth_bytes_per_s
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    x = np.logspace(-2, 3, 200)
    ax.plot(x, np.minimum(peak, bandwidth * x) / 1e9, color="black", lw=1, label="attainable (calibrated)")
    ridge = peak / bandwidth
    ax.axvline(ridge, color="grey", ls=":", lw=1)
    ax.annotate(f"ridge {ridge:.1f} FLOP/byte", (ridge, peak / 1e9), fontsize=8, xytext=(4, -12),
                textcoords="offset points")
    for model, group in rows[(rows["mode"] == "infer") & (rows.time_ms > 0) & (rows.macs > 0)].groupby("model"):
        ax.scatter(group.intensity, group.achieved / 1e9, s=10, label=f"{model} (measured)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title("Measured layers on this CPU's roofline (fp32, inference)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def measured_section(rows: pd.DataFrame, results: Path, figures: Path) -> str:
    """Measured per-layer time on this CPU, by category, against MACs; predicted beside measured."""
    first = rows.iloc[0]
    runs = rows.groupby(["model", "mode", "batch"], sort=False).agg(latency_ms=("latency_ms", "first"),
                                                                    coverage=("coverage", "first"),
                                                                    layers=("name", "size")).reset_index()
    kinds = by_kind(rows)
    shares_plot(kinds, figures / "speed-shares.png")
    text = (f"## Measured on this CPU\n\n`benchmarks/bench_profile.py --write` on {first.machine}, torch "
            f"{first.torch}, {first.threads} threads, fp32 (`cnncost profile MODEL` per layer; the latency is "
            "measured without the profiler, coverage = the rows' sum over it):\n\n"
            + table(runs.to_dict("records"), human=False, floatfmt=".4g")
            + "\nShare of time against share of MACs per op category: the convolutions' share of the time is far "
              "below their share of the MACs, and every memory-bound category (norms, activations, "
              "elementwise ops, pooling) takes time out of proportion to its MACs:\n\n"
            + table(kinds.to_dict("records"), human=False, floatfmt=".4g") + "\n"
            + image("figures/speed-shares.png", "share of time vs share of MACs") + "\n")
    inference = rows[(rows["mode"] == "infer") & (rows.predicted_ms.astype(str) != "")].copy()
    if not inference.empty:
        inference["predicted_ms"] = inference.predicted_ms.astype(float)
        side = []
        for model, group in inference.groupby("model", sort=False):
            per = group.groupby("category")[["time_ms", "predicted_ms"]].sum()
            for category, r in per.sort_values("time_ms", ascending=False).iterrows():
                side.append({"model": model, "category": category, "measured_ms": round(r.time_ms, 3),
                             "predicted_ms": round(r.predicted_ms, 3)})
        text += ("Predicted beside measured (`cnncost predict --device` this CPU's calibrated profile, the same "
                 "rows), per category:\n\n" + table(side, human=False, floatfmt=".4g") + "\n")
        from cnncost.speed.device import find_measured
        profile = find_measured(results, first.machine, int(first.threads))  # this CPU's, at the rows' threads
        if profile is not None:
            inference["intensity"] = [2 * m / b if b else 0 for m, b in zip(inference.macs, inference.bytes)] \
                if "bytes" in inference else 0
            inference["achieved"] = 2 * inference.macs / (inference.time_ms / 1e3)
            if "bytes" in inference:
                roofline_plot(inference, profile, figures / "speed-roofline-cpu.png")
                text += image("figures/speed-roofline-cpu.png", "measured layers on this CPU's roofline") + "\n"
    return text


def gpu_section(figures: Path) -> str:
    """Predicted images/s of the lecture's models on three GPUs beside their MACs, and MACs against speed."""
    from cnncost.speed.tables import REPORT_DEVICES, lecture_speeds, macs_figures, macs_versus_speed
    speeds = lecture_speeds()
    columns = [f"{d}_img_per_s" for d in REPORT_DEVICES]
    shown = speeds[["model", "size", "gmacs", "params_m", *columns]].round(2)
    shown[columns] = shown[columns].round().astype(int)  # predictions, not measurements: whole images/s
    versus = macs_versus_speed(speeds)
    figures_ = macs_figures(speeds)
    lines = "\n".join(f"- {d}: Spearman rank correlation of 1/MACs with predicted images/s "
                      f"{f['spearman_inverse_macs']:.2f}; achieved TFLOP/s spread {f['tflop_per_s_spread']:.0f}x "
                      "between the fastest and slowest model per MAC" for d, f in figures_.items())
    return ("## Predicted on GPUs\n\n`cnncost predict MODEL --device KEY --dtype fp16 --channels-last` at batch "
            "256 (eager AMP inference: the data sheet's peaks times the stated constants of "
            "`cnncost/speed/constants.py`, set on timm's RTX 3090 table), images/s:\n\n"
            + table(shown.to_dict("records"), human=False)
            + "\n## MACs don't predict speed, in numbers\n\nAgainst ResNet-50: how many times fewer MACs a model "
              "has, and how many times faster it is predicted to run; a ratio of the two far from 1 is MACs "
              "failing to predict speed:\n\n"
            + table(versus.round(3).to_dict("records"), human=False, floatfmt=".4g") + "\n" + lines + "\n\n")


def accuracy_section(results: Path) -> str:
    """How well predictions matched measurements (benchmarks/validate_predict.py's figures)."""
    path = results / "predict-accuracy.json"
    if not path.is_file():
        return ""
    figures = json.loads(path.read_text())
    rows = [{"measured on": where, "predictor": name, **values}
            for where, predictors in figures.items() for name, values in predictors.items()]
    return ("## How well predictions match measurements\n\n`benchmarks/validate_predict.py` (median and 90th "
            "percentile relative error of speed, Spearman's rank correlation, the share of pairs of models within "
            "1.5x of each other whose faster one is named right), predict beside 1/MACs at its best scale:\n\n"
            + table(rows, human=False, floatfmt=".3g") + "\n")


def report(out: Path, results: Path = RESULTS) -> str:
    """reports/speed.md."""
    import sys
    rows = measured(results)
    if rows is None:
        print(f"cnncost: note: speed.md: no {results / 'profile-cpu.csv'} (benchmarks/bench_profile.py --write "
              "makes it): the measured section is left out", file=sys.stderr)
    body = measured_section(rows, results, out / "figures") if rows is not None else ""
    return ("# Speed: time measured and predicted\n\nCounting tells what a layer must do; time is what it costs. "
            "`cnncost profile` measures each layer's time (torch.profiler's op times joined to the rows `trace` "
            "prints), `cnncost calibrate` what this machine achieves, and `cnncost predict` each layer's time from "
            "its exact FLOPs and bytes on a device's roofline.\n\n" + body + gpu_section(out / "figures")
            + accuracy_section(results))
