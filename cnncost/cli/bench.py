"""`cnncost bench`, `cnncost plot`, `cnncost train-cost`: measured speed next to counted cost."""
from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from cnncost.cli.app import app
from cnncost.cli.options import (ArgOpt, AuxOpt, ChannelsOpt, FormatOpt, InputOpt, OutputOpt, QuietOpt, SizeOpt,
                                 UnitOpt, lower, model_options_given, named_model, unit_of)

SHOWN = ("model", "mode", "batch", "size", "dtype", "img_per_s", "latency_ms_p50", "latency_ms_p90", "peak_mem_mb",
         "macs_per_image", "tflops_achieved", "mfu", "error")
DEFAULTS = {"cuda": {"batch": "1,8,32,128,256", "warmup": 10, "iters": 50, "repeats": 5},
            "cpu": {"batch": "1,8", "warmup": 2, "iters": 5, "repeats": 3}}


MAX_BATCH = 2**31 - 1  # torch's largest batch dimension for most kernels


def parse_batches(text: str) -> list[int]:
    """'1,8,32' -> [1, 8, 32]; anything but positive integers up to MAX_BATCH (an empty item too) is a one-line
    error."""
    from cnncost.errors import CnnCostError
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isascii() and part.isdigit() and 1 <= int(part) <= MAX_BATCH for part in parts):
        raise CnnCostError(f"--batch wants positive integers up to {MAX_BATCH:,} separated by commas, got {text!r}")
    return [int(part) for part in parts]


def same_file(one: str, other: str) -> bool:
    """Whether two paths name the same file (through links)."""
    import os
    return os.path.realpath(one) == os.path.realpath(other)


def pick_device(device: str) -> str:
    """auto -> cuda when a GPU is there, else cpu."""
    if device != "auto":
        return device
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def summary(row: dict) -> str:
    """One finished row in a few words, for the progress bar."""
    if row["error"]:
        return f"{row['model']} batch {row['batch']}: {row['error'][:60]}"
    return f"{row['model']} batch {row['batch']}: {row['img_per_s']:,.1f} img/s"


@app.command()
def bench(
    ctx: typer.Context,
    models: Annotated[list[str], typer.Argument(help="Models: cnncost names or aliases, torchvision names, "
                                                "timm:NAME, or FILE.py:FACTORY (its own arguments as "
                                                "FILE.py:FACTORY[key=value, ...]).")],
    device: Annotated[str, typer.Option("--device", help="cuda, cuda:N, cpu, or auto (cuda when present).",
                                        callback=lower)] = "auto",
    batch: Annotated[Optional[str], typer.Option("--batch", "-b", help="Batch sizes, comma-separated "
                                                 "(default 1,8,32,128,256 on cuda, 1,8 on cpu).")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="fp32, tf32 (cuda), fp16 or bf16.", callback=lower)] = "fp32",
    channels_last: Annotated[bool, typer.Option("--channels-last", help="NHWC memory layout.")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    compile_mode: Annotated[str, typer.Option("--compile-mode", help="default, reduce-overhead, max-autotune or "
                                              "max-autotune-no-cudagraphs.", callback=lower)] = "default",
    cuda_graphs: Annotated[bool, typer.Option("--cuda-graphs", help="Capture the step in a CUDA graph.")] = False,
    mode: Annotated[str, typer.Option("--mode", help="infer (eval, inference_mode) or train (SGD step).",
                                      callback=lower)] = "infer",
    warmup: Annotated[Optional[int], typer.Option("--warmup", help="Untimed steps first (default 10 cuda, 2 cpu).")] = None,
    iters: Annotated[Optional[int], typer.Option("--iters", help="Timed steps per block (default 50 cuda, 5 cpu).")] = None,
    repeats: Annotated[Optional[int], typer.Option("--repeats", help="Timed blocks (default 5 cuda, 3 cpu).")] = None,
    size: SizeOpt = None,
    inputs: InputOpt = None,
    channels: ChannelsOpt = None,
    arg: ArgOpt = None,
    aux: AuxOpt = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads for torch (default: torch's).")]
    = None,
    out: Annotated[Optional[str], typer.Option("--out", help="Append every finished row to this CSV.")] = None,
    unit: UnitOpt = "macs",
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Measure images/s, latency, peak memory, achieved TFLOP/s and MFU over batch sizes."""
    from cnncost.bench.counts import model_source
    from cnncost.bench.csvio import check_target
    from cnncost.bench.runner import Settings, check, noise_warning
    from cnncost.errors import CnnCostError
    from cnncost.output import emit, in_unit

    device = pick_device(device)
    plain = DEFAULTS["cuda" if device.startswith("cuda") else "cpu"]
    given = {"batch": batch, "warmup": warmup, "iters": iters, "repeats": repeats}
    plain = {k: plain[k] if given[k] is None else given[k] for k in plain}
    settings = check(Settings(device, dtype, mode, channels_last, compile, cuda_graphs, plain["warmup"],
                              plain["iters"], plain["repeats"], size, compile_mode, threads))
    if out is not None:
        check_target(out)
        if output and output != "-" and same_file(output, out):
            raise CnnCostError(f"cannot write {output}: it is the --out CSV this command appends to")
    traced = model_options_given(ctx, models)
    sources = [named_model(ctx, m, aux, arg, channels, inputs) if traced else model_source(m) for m in models]
    batches = input_batches(sources) if inputs else parse_batches(plain["batch"])
    u = unit_of(unit)
    rows = in_unit(run_sweep(sources, batches, settings, out, traced), u)
    failed = any(r["error"] for r in rows)  # a table of measured rows needs no empty error column
    columns = [k.replace("macs", u.name) for k in SHOWN if k != "error" or failed or fmt != "table"]
    title = f"Benchmark ({u.label} per image: conv + linear; TFLOP/s = 2 x MACs x img/s)"
    emit({title: rows if fmt == "csv" else [{k: r[k] for k in columns} for r in rows]}, fmt, output, data=rows)
    warning = noise_warning(rows)
    if warning:
        print(f"cnncost: warning: {warning}", file=sys.stderr)
    if rows and all(r["error"] for r in rows):
        print(f"cnncost: error: every row failed (first: {rows[0]['error']})", file=sys.stderr)
        raise typer.Exit(1)


def input_batches(sources: list) -> list[int]:
    """The one batch --input gives: its first tensor's first dimension."""
    return [sources[0].shapes[0][0][0] if sources[0].shapes[0][0] else 1]


def run_sweep(sources: list, batches: list[int], settings, out: str | None, traced: bool = False) -> list[dict]:
    """Run the sweep under a progress bar, appending each finished row to the CSV; Ctrl-C keeps them."""
    from cnncost import progress
    from cnncost.bench.csvio import append_rows
    from cnncost.bench.runner import plan, sweep

    rows: list[dict] = []
    planned = plan(sources, settings, traced)  # bad input fails here, before the progress bar or the CSV
    with progress.bar("bench", len(sources) * len(batches)) as bar:
        try:
            for row in sweep(sources, batches, settings, planned=planned,
                             before=lambda m, b: bar.working(f"{m} batch {b}")):
                if out:
                    append_rows(out, [row])
                rows.append(row)
                bar.done(summary(row))
        except KeyboardInterrupt:
            where = f" in {out}" if out else ""
            print(f"cnncost: interrupted; {len(rows)} finished row(s) kept{where}", file=sys.stderr)
            raise
    return rows


@app.command()
def plot(
    csv: Annotated[str, typer.Argument(help="A CSV written by `cnncost bench --out`.")],
    out_dir: Annotated[Optional[str], typer.Option("--out-dir", help="Where to write (default: the CSV's folder).")] = None,
    formats: Annotated[str, typer.Option("--formats", help="png,svg or one of them (any case).")] = "png,svg",
) -> None:
    """Plots from a bench CSV alone: throughput vs batch, throughput vs GMACs, MFU per model."""
    from cnncost.bench.plots import plot_csv
    from cnncost.errors import CnnCostError

    if out_dir is not None and not out_dir.strip():
        raise CnnCostError("--out-dir needs a folder name (leave it out for the CSV's folder)")
    chosen = tuple(f.strip().lower() for f in formats.split(","))
    if not all(chosen):
        raise CnnCostError(f"--formats wants png, svg or png,svg, got {formats!r}")
    from cnncost.output import to_stdout
    written = plot_csv(csv, out_dir, tuple(dict.fromkeys(chosen)))
    to_stdout("".join(f"{path}\n" for path in written))


def vertical(record: dict) -> list[dict]:
    """One record as quantity/value rows (exact), with a rounded reading of big numbers."""
    return [{"quantity": k, "value": v, "approx": f"{v:.3g}" if isinstance(v, int) and v >= 10**6 else ""}
            for k, v in record.items()]


def check_estimate(gpu: str, dtype: str, mfu: float, csv: str | None):
    """The estimate's inputs checked before the model is traced: the MFU, the device and its dtype; the CSV's
    rows, read once (None without --csv)."""
    from cnncost.bench.devices import by_key
    from cnncost.errors import CnnCostError
    if not 0 < mfu <= 1:  # NaN fails too
        raise CnnCostError(f"MFU must be in (0, 1], got {mfu}")
    device = by_key(gpu)
    if device.peak_tflops(dtype) is None:
        raise CnnCostError(f"{device.name} has no {dtype} tensor-core mode; choose another --dtype")
    if csv is None:
        return None
    from cnncost.bench.csvio import read_rows
    return read_rows(csv)


@app.command("train-cost")
def train_cost(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name or alias, torchvision name, timm:NAME or "
                                         "FILE.py:FACTORY[key=value, ...].")],
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the dataset.")] = 90,
    dataset_size: Annotated[int, typer.Option("--dataset-size", help="Training images (ImageNet-1k: 1,281,167).")]
    = 1_281_167,
    size: SizeOpt = None,
    inputs: InputOpt = None,
    channels: ChannelsOpt = None,
    arg: ArgOpt = None,
    aux: AuxOpt = None,
    csv: Annotated[Optional[str], typer.Option("--csv", help="Bench CSV with measured training rows.")] = None,
    gpu: Annotated[str, typer.Option("--gpu", help="Device of the stated-MFU estimate: h100-sxm, a100-80gb-sxm, "
                                     "l4, rtx4090, ... (see `cnncost devices`).")] = "h100-sxm",
    dtype: Annotated[str, typer.Option("--dtype", help="Training precision: bf16, fp16, tf32 or fp32.",
                                       callback=lower)] = "bf16",
    mfu: Annotated[float, typer.Option("--mfu", help="Assumed model FLOP utilisation, 0..1.")] = 0.3,
    unit: UnitOpt = "macs",
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
) -> None:
    """Total training multiply-adds (forward + backward, per layer kind) and the GPU-hours they imply."""
    from cnncost.bench.traincost import train_cost as estimate
    from cnncost.output import check_output, emit, in_unit

    u = unit_of(unit)
    rows = check_estimate(gpu, dtype, mfu, csv)
    if output:
        check_output(output)  # again, now that the --csv it reads is known: never that file
    if model_options_given(ctx, [model]):
        model = named_model(ctx, model, aux, arg, channels, inputs)  # traced as built, not a spec's rules
    cost = estimate(model, size, epochs, dataset_size, rows, gpu, dtype, mfu)
    if cost.unsupported:
        ops = ", ".join(f"{op} x{n}" for op, n in sorted(cost.unsupported.items()))
        print(f"cnncost: warning: no formula for {ops}; counted as 0 in the totals", file=sys.stderr)
    from cnncost.bench.traincost import BASIS
    tables = {f"{cost.model} training: {u.label} per image, forward + backward; {BASIS}, A = outputs":
              in_unit(cost.kinds, u),
              "Budget (conv + linear: the MFU convention)": vertical(in_unit([cost.summary()], u)[0]),
              "Hours on one device (GPU-hours; a CPU measurement gives CPU-hours)": cost.estimates}
    if not cost.kinds:
        tables.pop(next(iter(tables)))
    data = {"summary": in_unit([cost.summary()], u)[0], "kinds": in_unit(cost.kinds, u), "estimates": cost.estimates}
    emit(tables, fmt, output, data=data)


@app.command()
def devices(fmt: FormatOpt = "table", output: OutputOpt = None) -> None:
    """Dense peak TFLOP/s per dtype and memory bandwidth of known accelerators, with sources (MFU's denominator)."""
    from cnncost.bench.devices import records
    from cnncost.output import emit

    emit({"Dense peaks (no sparsity), TFLOP/s; bandwidth GB/s": records()}, fmt, output)
