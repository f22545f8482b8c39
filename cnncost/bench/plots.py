"""Plots made from a bench CSV alone: throughput vs batch, throughput vs GMACs ("FLOPs are not speed"), MFU.

Deterministic: the Agg backend, a fixed SVG hash salt, no dates or software versions in the files.
"""
from __future__ import annotations

from pathlib import Path

from cnncost.bench.csvio import read_rows
from cnncost.errors import CnnCostError
from cnncost.figures import plain_log_axes, pyplot, save_formats

FORMATS = ("png", "svg")


def config(row) -> str:
    """A short label of how a row was run: 'bf16 CL compiled infer'."""
    compiled = f"compiled {row.compile_mode}".replace(" default", "") if row.compile else ""
    flags = [row.dtype, "CL" if row.channels_last else "", compiled,
             "graphs" if row.cuda_graphs else "", row.mode]
    return " ".join(f for f in flags if f)


def measured(path: str | Path):
    """The rows of the CSV that have a measurement, with a 'config' label; a one-line error if none."""
    df = read_rows(path)
    df = df[(df.error.fillna("") == "") & df.img_per_s.notna()].copy()
    if df.empty:
        raise CnnCostError(f"{path} has no measured rows to plot (every row has an error, or none exist)")
    df["config"] = [config(r) for r in df.itertuples()]
    df["gmacs"] = df.macs_per_image / 1e9
    return df


def where(df) -> str:
    """The device(s) the rows were measured on, CPUs marked as such with their thread count."""
    def label(name, device, threads):
        return f"{name} (CPU, {threads:g} thread{'s' if threads != 1 else ''})" if device == "cpu" else name
    return ", ".join(sorted({label(*r) for r in zip(df.device_name, df.device, df.threads)}))


def best(df):
    """Per (model, config): the row with the highest images/s over the batch sizes."""
    return df.loc[df.groupby(["model", "config"]).img_per_s.idxmax()].sort_values(["config", "gmacs"])


def throughput_vs_batch(df, ax) -> str:
    """images/s against batch size, one line per model and config; the file suffix."""
    for (model, label), rows in df.groupby(["model", "config"]):
        rows = rows.groupby("batch", as_index=False).img_per_s.median()
        ax.plot(rows.batch, rows.img_per_s, marker="o", label=f"{model} ({label})")
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="images/s",
           title=f"Throughput vs batch size on {where(df)}")
    plain_log_axes(ax)
    ax.set_xticks(sorted(df.batch.unique()), labels=[str(b) for b in sorted(df.batch.unique())])
    ax.legend(fontsize=7, loc="best")
    return "throughput-vs-batch"


def throughput_vs_gmacs(df, ax) -> str:
    """Best inference images/s against forward GMACs per image, with the line speed would follow if it were MACs."""
    top = best(df[df["mode"] == "infer"] if (df["mode"] == "infer").any() else df)
    for label, rows in top.groupby("config"):
        ax.scatter(rows.gmacs, rows.img_per_s, label=label, zorder=3)
        for r in rows.itertuples():
            ax.annotate(r.model, (r.gmacs, r.img_per_s), textcoords="offset points", xytext=(4, 4), fontsize=7)
    rate = (2 * top.macs_per_image * top.img_per_s).median()
    span = top.gmacs.min() * 0.7, top.gmacs.max() * 1.4
    ax.plot(span, [rate / (2 * g * 1e9) for g in span], "--", color="grey",
            label=f"if speed followed MACs: constant {rate / 1e12:.3g} TFLOP/s")
    ax.set(xscale="log", yscale="log", xlabel="forward GMACs per image (conv + linear)",
           ylabel="images/s (best batch size)", title=f"FLOPs are not speed: throughput vs GMACs on {where(df)}")
    plain_log_axes(ax)
    ax.legend(fontsize=7, loc="best")
    return "throughput-vs-gmacs"


def efficiency(df, ax) -> str:
    """MFU per model at its best batch size (achieved TFLOP/s when no device peak is known); the file suffix."""
    top = best(df)
    use_mfu = top.mfu.notna().any()
    value = top.mfu * 100 if use_mfu else top.tflops_achieved
    labels = [f"{m} ({c})" for m, c in zip(top.model, top.config)]
    bars = ax.barh(labels, value.fillna(0))
    ax.bar_label(bars, labels=[f"{v:.3g}" for v in value.fillna(0)], fontsize=7, padding=2)
    ax.invert_yaxis()
    what = "MFU, % of dense peak" if use_mfu else "achieved TFLOP/s (no device peak known, so no MFU)"
    title = "Model FLOP utilisation" if use_mfu else "Achieved TFLOP/s"
    ax.set(xlabel=f"{what}; 2 x conv+linear MACs x images/s", title=f"{title} at the best batch size on {where(df)}")
    return "mfu" if use_mfu else "tflops"


def plot_csv(path: str | Path, out_dir: str | Path | None = None, formats=FORMATS) -> list[Path]:
    """All three plots of a bench CSV, named after it (bench.csv -> bench-throughput-vs-batch.png, ...)."""
    plt = pyplot()
    bad = sorted(set(formats) - set(FORMATS))
    if bad:
        raise CnnCostError(f"unknown plot format {bad[0]!r}; choose png or svg")
    path = Path(path)
    df = measured(path)
    out = Path(out_dir) if out_dir else path.parent
    if not out.is_dir():
        raise CnnCostError(f"cannot write plots: directory {out} does not exist")
    written = []
    for draw, size in ((throughput_vs_batch, (8, 5)), (throughput_vs_gmacs, (8, 5)),
                       (efficiency, (8, 1.5 + 0.35 * len(best(df))))):
        fig, ax = plt.subplots(figsize=size)
        suffix = draw(df, ax)
        written += save_formats(fig, out / f"{path.stem}-{suffix}", formats)
    return written
