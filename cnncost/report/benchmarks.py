"""The benchmarks report: measured throughput from results/bench-*.csv, each labelled with its device."""
from __future__ import annotations

import statistics
from pathlib import Path

from cnncost.report.markdown import image, table

RESULTS = Path("results")
SHOWN = ("model", "config", "batch", "size", "img_per_s", "latency_ms_p50", "latency_ms_p90", "peak_mem_mb",
         "macs_per_image", "tflops_achieved", "mfu")
AGAINST = ("model", "config", "batch", "size", "img_per_s", "predicted_img_per_s", "error_pct")


def row_profile(row, results: Path):
    """The device profile a measured row is predicted on: a CPU's calibrated profile under results/ at the row's
    threads, a GPU's data-sheet entry; None when there is none."""
    from cnncost.bench.devices import match
    from cnncost.speed.constants import datasheet_profile
    from cnncost.speed.device import find_measured
    if row.device == "cpu":
        return find_measured(results, row.device_name, int(row.threads))
    entry = match(str(row.device_name))
    return datasheet_profile(entry) if entry is not None else None


def predicted(row, profile) -> float | None:
    """`cnncost predict`'s images/s for a measured row's model and settings on the profile; None for a model this
    page does not build (a user's file: user code runs only when named) or cannot predict."""
    from cnncost.errors import CnnCostError
    from cnncost.speed.estimate import predict_on
    if profile is None or ".py:" in str(row.model):
        return None
    try:
        return predict_on(profile, str(row.model), str(row.dtype), int(row.batch), int(row.size),
                          bool(row.channels_last), bool(row.compile), row.mode == "train").img_per_s
    except CnnCostError:
        return None


def against(df, results: Path) -> str:
    """Every measured row beside predict's images/s for it, and the median error."""
    rows, errors, sources, profiles = [], [], set(), {}
    for row in df.sort_values(["config", "gmacs", "batch"]).itertuples():
        device = (row.device, row.device_name, row.threads if row.device == "cpu" else None)
        if device not in profiles:  # each device's profile is read once, not once per row
            profiles[device] = row_profile(row, results)
        profile = profiles[device]
        guess = predicted(row, profile)
        error = 100 * (guess / row.img_per_s - 1) if guess else None
        if error is not None:
            errors.append(abs(error))
            sources.add(f"`{profile.key}` (calibrated, results/)" if profile.measured
                        else f"`{profile.key}` (data sheet x the constants of cnncost/speed/constants.py)")
        rows.append({"model": row.model, "config": row.config, "batch": row.batch, "size": row.size,
                     "img_per_s": row.img_per_s, "predicted_img_per_s": round(guess, 2) if guess else "",
                     "error_pct": round(error, 1) if error is not None else ""})
    if not errors:
        return ("No prediction beside these rows: no device profile for this device (a CPU needs its "
                "`cnncost calibrate` profile under results/ at the rows' thread count).\n\n")
    median = statistics.median(errors)
    return (f"Every measured row beside `cnncost predict`'s images/s for the same model and settings, on "
            f"{', '.join(sorted(sources))}; error = predicted / measured - 1. Median |error| {median:.1f}% over "
            f"{len(errors)} of {len(rows)} rows:\n\n" + table(rows, human=False, floatfmt=".4g") + "\n")


def section(csv: Path, figures: Path, results: Path = RESULTS) -> str:
    """One CSV: its device, the best row per model and settings, its plots, and each row beside its prediction."""
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
            + "".join(image(f"figures/{p.name}", p.stem) for p in plots) + "\n"
            + against(df, results))


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
            sections.append(section(csv, out / "figures", results))
        except CnnCostError as e:
            sections.append(f"## {csv.name}\n\nLeft out: {e}.\n\n")
    body = "".join(sections) or "No benchmark CSV under results/ yet.\n"
    return ("# Benchmarks\n\nMeasured by `cnncost bench` (CUDA events on a GPU, perf_counter on a CPU), "
            "plotted from the CSV alone. Counted MACs do not predict speed: compare images/s with MACs per "
            "image.\n\n" + body)
