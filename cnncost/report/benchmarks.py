"""The benchmarks report: measured throughput from results/bench-*.csv, each labelled with its device."""
from __future__ import annotations

from pathlib import Path

from cnncost.report.markdown import image, table

RESULTS = Path("results")
SHOWN = ("model", "config", "batch", "size", "img_per_s", "latency_ms_p50", "latency_ms_p90", "peak_mem_mb",
         "macs_per_image", "tflops_achieved", "mfu")


def section(csv: Path, figures: Path) -> str:
    """One CSV: its device, the best row per model and settings, and its plots."""
    from cnncost.bench.plots import best, measured, plot_csv, where

    df = measured(csv)
    plots = [p for p in plot_csv(csv, figures, formats=("png",))]
    shown = best(df)[list(SHOWN)].astype(object)
    rows = shown.where(shown.notna(), "").to_dict("records")
    cpu = (df.device == "cpu").all()
    label = " — CPU figures, not a GPU measurement" if cpu else ""
    return (f"## {csv.name}: {where(df)}{label}\n\n"
            f"{len(df)} measured rows; the best batch per model and settings (images/s, latency in ms, peak "
            "memory in MB, MACs per image from the analytic spec or our tracer, achieved TFLOP/s = 2 x MACs x "
            "images/s, MFU against the device's dense peak):\n\n"
            + table(rows, human=False, floatfmt=".4g") + "\n"
            + "".join(image(f"figures/{p.name}", p.stem) for p in plots) + "\n")


def problems(results: Path = RESULTS) -> list[str]:
    """Why the page shows no data, or leaves a CSV out (one line each, for stderr); empty when all is shown."""
    from cnncost.bench.plots import measured
    from cnncost.errors import CnnCostError

    where = results if results.is_absolute() else Path.cwd() / results
    if not results.is_dir():
        return [f"benchmarks.md has no data: there is no folder {results}/ here ({where}); run `cnncost report` "
                "in the repository, or name the folder of bench CSVs with --results"]
    csvs = sorted(results.glob("bench-*.csv"))
    if not csvs:
        return [f"benchmarks.md has no data: no bench-*.csv in {where} (`cnncost bench ... --out {results}/bench-NAME.csv` "
                "writes one)"]
    found = []
    for csv in csvs:
        try:
            measured(csv)
        except CnnCostError as e:
            found.append(f"benchmarks.md leaves out {csv}: {e}")
    return found


def report(out: Path, results: Path = RESULTS) -> str:
    """reports/benchmarks.md from every bench CSV (bench-*.csv) under results/ that has measured rows (problems() says why not)."""
    from cnncost.errors import CnnCostError

    sections = []
    for csv in sorted(results.glob("bench-*.csv")) if results.is_dir() else []:
        try:
            sections.append(section(csv, out / "figures"))
        except CnnCostError as e:
            sections.append(f"## {csv.name}\n\nLeft out: {e}.\n\n")
    body = "".join(sections) or "No benchmark CSV under results/ yet.\n"
    return ("# Benchmarks\n\nMeasured by `cnncost bench` (CUDA events on a GPU, perf_counter on a CPU), "
            "plotted from the CSV alone. Counted MACs do not predict speed: compare images/s with MACs per "
            "image.\n\n" + body)
