"""`cnncost profile`: measured time per layer on this machine's CPU or a GPU, joined to the rows trace prints."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from cnncost.cli.app import app
from cnncost.cli.options import (TARGET_HELP, ArgOpt, AuxOpt, ChannelsOpt, FormatOpt, InputOpt, ModelBatchOpt,
                                 OutputOpt, QuietOpt, SizeOpt, lower, named_model, notice, positive)

SHOWN = ("name", "kind", "time_ms", "share", "macs", "flop_per_s", "bytes_per_s", "bound", "efficiency")
TRAIN_SHOWN = ("name", "kind", "time_ms", "share", "train_macs", "flop_per_s", "bound", "efficiency")
CountOpt = Annotated[int, typer.Option(callback=positive)]


@app.command("profile")
def profile_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help=TARGET_HELP)],
    device: Annotated[str, typer.Option("--device", callback=lower, help="cpu, cuda or cuda:N.")] = "cpu",
    dtype: Annotated[str, typer.Option("--dtype", callback=lower, help="fp32, or bf16 / fp16 through autocast "
                                       "(as timm's --amp).")] = "fp32",
    batch: ModelBatchOpt = None,
    size: SizeOpt = None,
    inputs: InputOpt = None,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="NHWC memory layout.")] = False,
    train: Annotated[bool, typer.Option("--train", help="A whole training step (forward, backward, SGD) with "
                                        "the rows `cnncost train` prints.")] = False,
    threads: Annotated[Optional[int], typer.Option("--threads", callback=positive,
                                                   help="CPU threads (default: torch's).")] = None,
    repeats: Annotated[int, typer.Option("--repeats", callback=positive, help="Profiled runs (a row's time is "
                                         "their median; their spread says how noisy the machine is).")] = 3,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed runs first.")] = 2,
    iters: Annotated[int, typer.Option("--iters", callback=positive, help="Runs per timed block of the "
                                       "un-instrumented latency.")] = 3,
    profile: Annotated[Optional[str], typer.Option("--profile", help="This machine's device profile (`cnncost "
                                                   "calibrate -o FILE`) for each row's roofline bound and "
                                                   "efficiency (default: the one `predict --device cpu` uses; a "
                                                   "GPU's data sheet).")] = None,
    aux: AuxOpt = None,
    arg: ArgOpt = None,
    channels: ChannelsOpt = None,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Measured time per layer, from torch.profiler's op (or kernel) times joined to the rows `trace` prints (or,
    with --train, `train`): time, share, achieved FLOP/s and bytes/s, the roofline bound and efficiency; the
    end-to-end latency without the profiler, and how much of it the rows cover."""
    from cnncost.output import emit
    from cnncost.speed.profile import check_device, profile_model

    device = check_device(device)
    source = named_model(ctx, model, aux, arg, channels, inputs)
    p = profile_model(source, device, dtype, batch, size, channels_last, train, threads, repeats, warmup, iters,
                      profile)
    rows = p.table.to_dict("records")
    shown = rows if fmt in ("json", "csv") else readable([{k: r.get(k) for k in (TRAIN_SHOWN if train else SHOWN)}
                                                         for r in rows])
    what = "training step" if train else "forward"
    title = (f"{p.model} {what} on {p.device_name} ({p.device}{f', {p.threads} threads' if p.threads else ''}), "
             f"{dtype}, batch {p.batch}: measured time per layer (median of {p.repeats} profiled runs)")
    data = {"model": p.model, "device": p.device, "device_name": p.device_name, "dtype": dtype, "batch": p.batch,
            "train": train, "channels_last": channels_last, "threads": p.threads, "repeats": repeats,
            "totals": p.totals(), "rows": rows, "notes": p.notes}
    notice(p.notes)
    totals = [p.totals()] if fmt in ("json", "csv") else readable([p.totals()])
    emit({title: shown, "Totals (latency without the profiler; coverage = profiled / latency)": totals},
         fmt, output, data=data)


def readable(records: list[dict]) -> list[dict]:
    """Times to 4 significant digits, shares and ratios as percentages, rates with a metric prefix."""
    from cnncost.units import human

    def value(key: str, v):
        if v is None or v == "":
            return ""
        if key in ("share", "coverage", "overhead", "spread", "efficiency"):
            return f"{v:.1%}"
        if key.endswith("_per_s") and key != "img_per_s":
            return human(v)
        return float(f"{v:.4g}") if isinstance(v, float) else v
    return [{k: value(k, v) for k, v in r.items()} for r in records]
