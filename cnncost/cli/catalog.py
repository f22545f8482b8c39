"""`cnncost list`, `show`, `compare` and `scale`: the lecture's architectures as data, no torch needed."""
from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from cnncost.cli.app import app
from cnncost.cli.options import (ArgOpt, AuxOpt, ChannelsOpt, DetectionsOpt, DtypeOpt, FormatOpt, InputOpt,
                                 ModelBatchOpt, OutputOpt, SizeOpt, UnitOpt, blank, layer_view, model_options_given,
                                 named_model, notice, unit_of)

ModelArg = Annotated[str, typer.Argument(help="Model name or alias, e.g. resnet50, resnext50 (see `cnncost list`).")]
ByOpt = Annotated[str, typer.Option("--by", help="One row per layer, stage, kind or category.")]
SpeedDeviceOpt = Annotated[Optional[str], typer.Option("--device", help="Add the predicted latency and images/s on a "
                                                       "device (cnncost predict's): a GPU key from `cnncost "
                                                       "devices`, cpu (this machine's calibrated profile) or a "
                                                       "profile FILE.json.")]
StageDepthOpt = Annotated[Optional[int], typer.Option("--depth", min=1, help="For a traced model, the module-tree "
                                                      "depth of its stages (default: where its repeated blocks "
                                                      "appear).")]
MultOpt = Annotated[Optional[float], typer.Option(help="Multiplier applied to the base (default 1).")]


def readable(key: str, value) -> str:
    """One totals value as read: counts with a metric prefix (25.6M), unknown as an empty cell."""
    from cnncost.output import is_count, is_number
    from cnncost.units import human
    if value is None:
        return ""
    return human(value) if is_count(key) and is_number(value) else str(value)


def ratio(key: str, value, base) -> str:
    """value / base for counts and depth, to 3 decimals; empty where a ratio means nothing."""
    from cnncost.output import is_count, is_number
    comparable = (is_count(key) or key == "depth") and is_number(value) and is_number(base) and base
    return f"{value / base:.3f}" if comparable else ""


def side_by_side(totals: list[dict]) -> list[dict]:
    """Totals turned for reading: one row per quantity, a column per model, then its ratio to the first model."""
    first, rows = totals[0], []
    for key in (k for k in first if k != "model" and not k.endswith("_ratio")):
        row = {"quantity": key}
        for i, t in enumerate(totals):
            row[t["model"]] = readable(key, t[key])
            if i:
                row[f"{t['model']} / {first['model']}"] = ratio(key, t[key], first[key])
        rows.append(row)
    return rows


def paper_in_unit(paper: dict, u) -> dict:
    """The paper's figures with counts as integers and *macs* renamed to the unit (the paper's "FLOPs" are MACs)."""
    from cnncost.output import in_unit
    counts = {k: round(v) if k in ("params", "macs") else v for k, v in paper.items()}
    return in_unit([counts], u)[0]


@app.command("list")
def list_models(
    pattern: Annotated[str, typer.Argument(help="Shell-style wildcard over names and aliases, e.g. 'resnet*'.")] = "*",
    every: Annotated[bool, typer.Option("--all", help="Also every torchvision classification model that `cnncost "
                                        "trace`, `show` and `compare` accept (counted by tracing).")] = False,
    unit: UnitOpt = "macs",
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
) -> None:
    """Registered models: aliases, family, input size, parameters and conv + linear MACs at that size."""
    from cnncost.catalog import catalog
    from cnncost.output import emit, in_unit
    u = unit_of(unit)
    rows = in_unit(catalog(pattern, every), u)
    shown = blank(rows, fmt)
    emit({f"Models (core {u.label} = conv + linear, at each model's own input size)": shown}, fmt, output, data=rows)


@app.command("show")
def show_command(
    ctx: typer.Context,
    model: ModelArg,
    size: SizeOpt = None,
    batch: ModelBatchOpt = None,
    inputs: InputOpt = None,
    aux: AuxOpt = None,
    arg: ArgOpt = None,
    channels: ChannelsOpt = None,
    detections: DetectionsOpt = None,
    by: ByOpt = "layer",
    depth: StageDepthOpt = None,
    device: SpeedDeviceOpt = None,
    unit: UnitOpt = "macs",
    dtype: DtypeOpt = "fp32",
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
) -> None:
    """One model layer by layer (or by stage, kind, category): shapes, params, MACs, bytes, intensity; totals.
    A model with no analytic spec (any torchvision model, FILE.py:FACTORY), or given model options, is counted by
    tracing the real model."""
    from cnncost.catalog import counted, layer_depth, predicted_speed, registered
    from cnncost.output import emit
    u = unit_of(unit)
    by = check_level(by)
    result = counted(model_to_count(ctx, model, aux, arg, channels, inputs, detections), size, batch, dtype,
                     depth)
    speed = predicted_speed(result, device, dtype) if device else {}
    rows, totals, shown = layer_view(result.by(by), {"layers": len(result.table),
                                                     "depth": layer_depth(result.table), **result.totals(),
                                                     **speed}, by, fmt, unit)
    shape = "x".join(map(str, result.input_shape))
    entry = registered(model) if result.source == "analytic" else None
    paper = entry.paper if entry else {}
    data = {**result.document(rows, totals[0], u.name, by, traced=False),
            "torchvision": entry.torchvision if entry else torchvision_name(result.model),
            "paper": paper_in_unit(paper, u)}
    how = "" if entry else ", traced (no analytic spec)"
    tables = {f"{result.model} on {shape}{how}, {dtype}, by {by} ({u.label})": shown,
              "Totals (the sum of the rows)": totals}
    if paper:
        tables["About"] = [{"source": paper.get("source", ""), "note": paper.get("note", "")}]
    notice(result.notes)
    emit(tables, fmt, output, data=data)


def model_to_count(ctx: typer.Context, model: str, aux, arg, channels, inputs, detections,
                   every: list[str] | None = None):
    """A registered name as it is (its analytic spec); a model with model options given (to any of `every`
    model) as its source, to be traced."""
    from cnncost.catalog import registered
    if registered(model) and not model_options_given(ctx, every or [model]):
        return model
    return named_model(ctx, model, aux, arg, channels, inputs, detections)


def check_level(by: str) -> str:
    """--by in any case: layer, stage, kind or category."""
    from cnncost.errors import CnnCostError
    from cnncost.result import LEVELS
    level = by.strip().lower()
    if level not in LEVELS:
        raise CnnCostError(f"unknown level {by!r} for --by; choose one of {', '.join(LEVELS)}")
    return level


def torchvision_name(model: str) -> str | None:
    """The torchvision name of a traced model (None for a user's file)."""
    return None if ":" in model else model


@app.command("compare")
def compare_command(
    ctx: typer.Context,
    models: Annotated[List[str], typer.Argument(help="Two or more models; ratios are to the first. A factory "
                                                "may carry its own arguments: 'net.py:make[width=8]' "
                                                "'net.py:make[width=16]' (quote them for the shell).")],
    size: SizeOpt = None,
    batch: ModelBatchOpt = None,
    inputs: InputOpt = None,
    aux: AuxOpt = None,
    arg: ArgOpt = None,
    channels: ChannelsOpt = None,
    detections: DetectionsOpt = None,
    depth: StageDepthOpt = None,
    device: SpeedDeviceOpt = None,
    unit: UnitOpt = "macs",
    dtype: DtypeOpt = "fp32",
    stages: Annotated[bool, typer.Option("--stages", help="Only the per-stage table (what csv then holds).")] = False,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
) -> None:
    """Models side by side: params, MACs, FLOPs, activations, depth, top-1, ratios; then stage by stage."""
    from cnncost.catalog import comparison
    from cnncost.output import emit
    u = unit_of(unit)
    chosen = [model_to_count(ctx, m, aux, arg, channels, inputs, detections, models) for m in models]
    totals, per_stage = comparison(chosen, size, batch, dtype, u, metadata=not stages, depth=depth, device=device)
    human = fmt in ("table", "md")
    tables = {f"Per stage (core {u.label} = conv + linear; all = every category; ratio to {totals[0]['model']})":
              blank(per_stage, fmt)}
    if not stages:
        tables = {"Totals (core = conv + linear)": side_by_side(totals) if human else totals, **tables}
    emit(tables, fmt, output, data={"unit": u.name, **({} if stages else {"totals": totals}), "stages": per_stage})


@app.command("scale")
def scale_command(
    base: Annotated[str, typer.Argument(help="Model to scale (EfficientNet or ResNet family).")] = "efficientnet_b0",
    phi: Annotated[Optional[List[float]], typer.Option("--phi", help="Compound coefficient; repeat for several "
                                                       "(default 0..7).")] = None,
    depth: MultOpt = None,
    width: MultOpt = None,
    resolution: MultOpt = None,
    published: Annotated[bool, typer.Option("--published", help="The registered B1..B7 as multipliers of "
                                            "the base.")] = False,
    unit: UnitOpt = "macs",
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
) -> None:
    """Compound scaling: predicted MACs (base x d x w^2 x r^2) against the exact count of the scaled spec."""
    from cnncost import scaling
    from cnncost.output import emit, in_unit
    u = unit_of(unit)
    rows = in_unit(scaling.calculate(base, phi or None, depth, width, resolution, published), u)
    name = scaling.scalable_entry(base).name
    notes = [{"why exact differs from predicted": n} for n in scaling.NOTES]
    emit({f"Scaling {name}: predicted vs exact conv + linear {u.label}": rows, "Notes": notes}, fmt, output,
         data={"base": name, "unit": u.name, "rows": rows, "notes": scaling.NOTES})
