"""`cnncost train`: one training step traced on the meta device, MACs per phase and memory per layer."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from cnncost.cli.app import app
from cnncost.cli.options import (TARGET_HELP, ArgOpt, AuxOpt, ChannelsOpt, FormatOpt, InputOpt, ModelBatchOpt,
                                 OutputOpt, SizeOpt, UnitOpt, lower, named_model, notice, unit_of)

SHOWN = ("name", "kind", "params", "forward_macs", "grad_input_macs", "grad_weight_macs", "recompute_macs",
         "optimizer_macs", "train_macs", "saved_bytes")


def memory_target(text: str) -> tuple[int, str]:
    """--fit as bytes and a label: '80GB' (10^9), '80GiB' (2^30), or a device key from `cnncost devices`."""
    from cnncost.bench.devices import by_key
    from cnncost.errors import CnnCostError
    from cnncost.trace.memory import parse_memory
    size = parse_memory(text)
    try:
        return size, f"{by_key(text).name} ({size / 2**30:g} GiB)"
    except CnnCostError:
        return size, text.strip()


def with_memory(table, per_module) -> list[dict]:
    """The per-module rows with the bytes each saves for backward (0 where it saves none)."""
    saved = dict(zip(per_module.name, per_module.saved_bytes)) if per_module is not None else {}
    rows = table.to_dict("records")
    for row in rows:
        row["saved_bytes"] = int(saved.pop(row["name"], 0))  # a module's later rows (other kinds): 0, not again
    return rows


def totals_of(result, memory: dict) -> dict:
    """Whole-step MACs (all and conv + linear) per phase, the training factor, and the memory totals."""
    totals = result.totals()
    core = {f"core_{c}": result.core(c) for c in ("forward_macs", "grad_input_macs", "grad_weight_macs")}
    core["core_train_macs"] = sum(core.values())
    factor = totals["train_macs"] / totals["forward_macs"] if totals["forward_macs"] else 0.0
    return {**totals, **core, "train_factor": round(factor, 4), **memory}


def vertical(totals: dict) -> list[dict]:
    """The totals as quantity / value rows for reading: a rounded reading and the exact count."""
    from cnncost.units import human
    return [{"quantity": k, "value": f"{human(v)} ({v:,})" if isinstance(v, int) and v >= 1000 else str(v)}
            for k, v in totals.items()]


def category_rows(result) -> list[dict]:
    """MACs per category and phase (grad_bias_adds: bias adds)."""
    return [{"category": c, **{k: int(v) for k, v in row.items()}} for c, row in result.by_category.iterrows()]


@app.command("train")
def train_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help=TARGET_HELP)],
    batch: ModelBatchOpt = None,
    size: SizeOpt = None,
    inputs: InputOpt = None,
    dtype: Annotated[str, typer.Option("--dtype", callback=lower,
                                       help="fp32, or bf16 / fp16 mixed precision (autocast).")] = "fp32",
    optimizer: Annotated[str, typer.Option("--optimizer", callback=lower,
                                           help="sgd (momentum 0.9) or adamw.")] = "sgd",
    input_grad: Annotated[bool, typer.Option("--input-grad", help="The input needs a gradient (the first "
                                             "layer then computes grad-input too).")] = False,
    fit: Annotated[Optional[str], typer.Option("--fit", help="Find the largest batch whose predicted peak fits: "
                                               "80GB (10^9 bytes), 80GiB (2^30), or a device key (h100-sxm, "
                                               "a100-40gb, rtx4090: its memory from `cnncost devices`).")] = None,
    aux: AuxOpt = False,
    arg: ArgOpt = None,
    channels: ChannelsOpt = None,
    unit: UnitOpt = "macs",
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
) -> None:
    """A training step (forward, cross-entropy, backward, optimizer) traced on the meta device: forward,
    grad-input, grad-weight and optimizer MACs per layer, the activations each saves, and the peak memory."""
    from cnncost.output import emit, in_unit
    from cnncost.trace.train import SOURCE, check_args, train_source

    u = unit_of(unit)
    check_args(optimizer, dtype)
    target = memory_target(fit) if fit is not None else None
    source = named_model(ctx, model, aux, arg, channels, inputs)
    result = train_source(source, batch, size, optimizer, dtype, input_grad)
    per_module, memory, notes = predicted_memory(source, batch, size, optimizer, dtype, input_grad, result.device)
    fitted = largest(source, target, size, dtype, optimizer) if target else None
    rows = in_unit(with_memory(result.table, per_module), u)
    totals = in_unit([totals_of(result, memory)], u)[0]
    categories = in_unit(category_rows(result), u)
    shape = "x".join(map(str, result.input_shape))
    data = {"model": result.model, "source": SOURCE, "input_shape": list(result.input_shape),
            "batch": result.input_shape[0] if result.input_shape else batch, "device": result.device,
            "dtype": dtype, "optimizer": optimizer, "input_grad": input_grad, "unit": u.name,
            "rows": rows, "totals": totals, "by_category": categories, "fit": fitted,
            "unsupported": result.unsupported, "notes": result.notes + notes}
    shown_columns = [c.replace("macs", u.name) for c in SHOWN]
    if not result.totals()["recompute_macs"]:
        shown_columns.remove(f"recompute_{u.name}")
    shown = rows if fmt in ("json", "csv") else [{k: r[k] for k in shown_columns} for r in rows]
    tables = {f"{result.model} training step on {shape} ({dtype}, {optimizer}"
              f"{', input needs grad' if input_grad else ''}), per layer ({u.label})": shown,
              f"Totals (the sum of the rows; memory predicted on {result.device})":
                  [totals] if fmt == "csv" else vertical(totals),
              "By category": categories}
    if fitted:
        tables["Largest batch that fits"] = [fitted]
    if result.unsupported:
        tables["Ops with no formula (counted as 0)"] = [{"op": k, "calls": n} for k, n in result.unsupported.items()]
    notice(result.notes + notes)
    emit(tables, fmt, output, data=data)


def predicted_memory(source, batch: int | None, size, optimizer: str, dtype: str, input_grad: bool, device: str = "meta"):
    """The memory tracker's per-module saved bytes and totals for the same step, each storage rounded to the CUDA
    allocator's 512-byte blocks as --fit does (None and a note if the tracker is missing)."""
    try:
        from cnncost.trace.memory import predict_memory
    except ImportError:
        return None, {}, ["memory prediction is not available (cnncost.trace.memory)"]
    from cnncost.trace.step import targets_for
    from cnncost.trace.train import batch_of
    model, example = source.instantiate(device)  # the CPU where the step could not run on meta
    inputs = source.inputs(batch, size, device, example)
    report = predict_memory(model, inputs, targets_for(batch_of(inputs, batch), device), optimizer, dtype,
                            input_grad, allocator="cuda")
    totals = {k: v for k, v in report.totals.items() if k.endswith("_bytes") and not k.startswith("peak_")
              or k == "peak_bytes"}
    return report.per_module, totals, []


def largest(source, target: tuple[int, str], size, dtype: str, optimizer: str) -> dict:
    """The largest batch whose predicted peak fits the memory (searched on meta by the memory tracker)."""
    from cnncost.errors import CnnCostError
    from cnncost.trace.memory import largest_batch
    memory_bytes, label = target
    batch = largest_batch(source, memory_bytes, size=size, dtype=dtype, optimizer=optimizer)
    if batch < 1:
        raise CnnCostError(f"--fit {label}: not even batch 1 fits; see `cnncost train {source.name} --batch 1` "
                           "for its predicted peak")
    return {"memory": label, "memory_bytes": memory_bytes, "largest_batch": int(batch)}
