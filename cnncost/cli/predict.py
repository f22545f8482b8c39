"""`cnncost predict`: predicted time per layer and images/s on a named GPU, this CPU, or a calibrated profile."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from cnncost.cli.app import app
from cnncost.cli.options import (TARGET_HELP, ArgOpt, AuxOpt, ChannelsOpt, FormatOpt, InputOpt, ModelBatchOpt,
                                 OutputOpt, SizeOpt, lower, named_model, notice, positive)

SHOWN = ("name", "kind", "op_class", "out_shape", "macs", "bytes", "bound", "predicted_ms", "share")
ROW_FIELDS = ("name", "kind", "category", "op_class", "in_shape", "out_shape", "groups", "macs", "flops", "bytes",
              "bound", "predicted_ms")
DEVICE_HELP = ("A GPU from `cnncost devices` (h100-sxm, a100-80gb-sxm, rtx4090, ...: data sheet x stated "
               "constants), cpu (this machine's profile from `cnncost calibrate`), or a profile FILE.json.")


@app.command("predict")
def predict_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help=TARGET_HELP)],
    device: Annotated[str, typer.Option("--device", "-d", help=DEVICE_HELP)] = "cpu",
    dtype: Annotated[str, typer.Option("--dtype", help="fp32, tf32, fp16 or bf16 (on a GPU fp16 / bf16 mean "
                                       "autocast, as timm and training run them; the device must have it).",
                                       callback=lower)] = "fp32",
    batch: ModelBatchOpt = None,
    size: SizeOpt = None,
    inputs: InputOpt = None,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="NHWC memory layout.")] = False,
    compiled: Annotated[bool, typer.Option("--compiled", help="As torch.compile runs it: memory-bound neighbours "
                                           "(norm, activation, elementwise) fused into one kernel.")] = False,
    train: Annotated[bool, typer.Option("--train", help="A training step (forward, backward, SGD) instead of "
                                        "a forward.")] = False,
    threads: Annotated[Optional[int], typer.Option("--threads", callback=positive,
                                                   help="CPU threads (default: torch's); a CPU profile must have "
                                                        "been measured with as many.")] = None,
    by: Annotated[str, typer.Option("--by", callback=lower, help="layer or class (op class totals).")] = "layer",
    aux: AuxOpt = None,
    arg: ArgOpt = None,
    channels: ChannelsOpt = None,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
) -> None:
    """Predicted time per layer and images/s: each layer's exact FLOPs and bytes on the device's roofline."""
    from cnncost.errors import CnnCostError
    from cnncost.output import emit
    from cnncost.speed.estimate import check_dtype, predict, resolve
    from cnncost.trace.counter import count_source

    if by not in ("layer", "class"):
        raise CnnCostError(f"--by must be layer or class, got {by!r}")
    profile = resolve(device, threads)
    check_dtype(profile, dtype)
    source = named_model(ctx, model, aux, arg, channels, inputs)
    result = count_source(source, batch, size, "meta", False, dtype)
    p = predict(result, profile, dtype, batch, size, channels_last=channels_last, compiled=compiled, train=train,
                threads=threads, source=source)
    emit(*views(p, profile, fmt, by, channels_last, compiled, train), fmt, output, data=json_data(
        p, profile, channels_last, compiled, train))
    notice(p.notes)


def row_records(p) -> list[dict]:
    """Every predicted row with its fields (JSON and CSV)."""
    table = p.table
    present = [c for c in ROW_FIELDS if c in table]
    records = table[present].to_dict("records")
    total = max(p.table.predicted_ms.sum(), 1e-30)
    for r in records:
        r["share"] = r["predicted_ms"] / total
    return records


def json_data(p, profile, channels_last: bool, compiled: bool, train: bool) -> dict:
    """The JSON document: settings, totals (units in the names), the device's provenance, rows, class totals."""
    from cnncost.speed import constants
    return {"model": p.model, "device": profile.key, "device_name": profile.name, "device_type":
            profile.device_type, "measured_profile": profile.measured, "dtype": p.dtype, "batch": p.batch,
            "channels_last": channels_last, "compiled": compiled, "train": train, "latency_ms": p.latency_ms,
            "img_per_s": p.img_per_s, "host_bound": p.host_bound, "flops": int(p.table.flops.sum()),
            "bytes": int(p.table.bytes.sum()),
            "gpu_constants": None if profile.measured else constants.count(),
            "rows": row_records(p), "by_class": p.by_class().to_dict("records"), "notes": p.notes}


def readable(records: list[dict]) -> list[dict]:
    """Times to 4 significant digits and shares as percentages, for tables meant to be read."""
    def value(k, v):
        if k == "share":
            return f"{v:.1%}"
        if isinstance(v, float) and k.endswith(("_ms", "_per_s")):
            return float(f"{v:.4g}")
        return v
    return [{k: value(k, v) for k, v in r.items()} for r in records]


def views(p, profile, fmt: str, by: str, channels_last: bool, compiled: bool, train: bool) -> tuple[dict]:
    """The tables to print: the rows (or op classes) and the totals."""
    how = ", ".join(w for w, on in (("channels-last", channels_last), ("compiled", compiled),
                                    ("training step", train)) if on)
    title = (f"{p.model} on {profile.name} ({'measured profile' if profile.measured else 'data sheet x constants'})"
             f", {p.dtype}, batch {p.batch}{', ' + how if how else ''}")
    if by == "class":
        shown = p.by_class().to_dict("records")
    elif fmt == "csv":
        shown = row_records(p)
    else:
        shown = [{k: r.get(k, "") for k in SHOWN} for r in row_records(p)]
    totals = [{"latency_ms": p.latency_ms, "img_per_s": p.img_per_s, "host_bound": p.host_bound,
               "flops": int(p.table.flops.sum()), "bytes": int(p.table.bytes.sum())}]
    if fmt in ("table", "md"):
        shown, totals = readable(shown), readable(totals)
    return ({f"{title}: predicted time per {by}": shown, "Totals": totals},)
