"""`cnncost trace` (our meta-device counter on a real model) and `cnncost verify` (analytic vs trace vs tools)."""
from __future__ import annotations

import sys
from typing import Annotated, List, Optional

import typer

from cnncost.cli.app import app
from cnncost.cli.options import (TARGET_HELP, ArgOpt, AuxOpt, ChannelsOpt, DetectionsOpt, DtypeOpt, FormatOpt, InputOpt, ModelBatchOpt,
                                 OutputOpt, QuietOpt, SizeOpt, StrictOpt, UnitOpt, layer_view,
                                 lower, named_model, notice, unit_of)
from cnncost.errors import CnnCostError

TRACE_LEVELS = ("layer", "module", "kind", "category")


@app.command("trace")
def trace_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help=TARGET_HELP)],
    size: SizeOpt = None,
    batch: ModelBatchOpt = None,
    inputs: InputOpt = None,
    by: Annotated[str, typer.Option("--by", callback=lower,  # any case
                                    help="layer, module (the modules at --depth; 1 = top-level), kind or "
                                    "category. (`show --by stage` is the paper's stages; a trace has modules.)")]
    = "layer",
    depth: Annotated[int, typer.Option("--depth", help="Module-tree depth for --by module.")] = 1,
    device: Annotated[str, typer.Option("--device", help="meta (no memory, any batch) or cpu.")] = "meta",
    aux: AuxOpt = None,
    arg: ArgOpt = None,
    channels: ChannelsOpt = None,
    detections: DetectionsOpt = None,
    strict: StrictOpt = False,
    unit: UnitOpt = "macs",
    dtype: DtypeOpt = "fp32",
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
) -> None:
    """Count a real PyTorch model with cnncost's own tracer: one row per module call and op kind."""
    from cnncost.formulas import dtype_bytes
    from cnncost.output import emit
    from cnncost.trace.counter import count_source
    from cnncost.trace.table import rollup

    dtype_bytes(dtype)
    device = device.strip().lower()
    check_trace_options(by, depth, device)
    source = named_model(ctx, model, aux, arg, channels, inputs, detections)
    result = count_source(source, batch, size, device, strict, dtype)
    table = rollup(result, depth) if by == "module" else result.by(by)
    rows, totals, shown = layer_view(table, result.totals(), by, fmt, unit)
    shapes_text = ", ".join("x".join(map(str, s)) for s in result.input_shapes) or "no tensor input"
    tables = {f"{result.model} on {shapes_text}, traced on {result.device}, by {by} ({unit_of(unit).label})": shown,
              "Totals (the sum of the rows)": totals}
    if result.unsupported:
        tables["Ops with no formula (counted as 0)"] = [{"op": k, "calls": n} for k, n in result.unsupported.items()]
    notice(result.notes)
    emit(tables, fmt, output, data=result.document(rows, totals[0], unit, by))


def check_trace_options(by: str, depth: int, device: str) -> None:
    """Refuse bad or conflicting trace options up front, one message per option."""
    if device not in ("meta", "cpu"):
        raise CnnCostError(f"--device must be meta or cpu, got {device!r}")
    if depth < 1:
        raise CnnCostError(f"--depth must be at least 1, got {depth}")
    if by == "stage":
        raise CnnCostError("--by stage: a trace has no paper stages; use --by module (top-level modules, or "
                           "--depth N for deeper), or `cnncost show MODEL --by stage` for the paper's stages")
    if by not in TRACE_LEVELS:
        raise CnnCostError(f"unknown --by {by!r}; choose one of {', '.join(TRACE_LEVELS)}")
    if depth != 1 and by != "module":
        raise CnnCostError("--depth applies only to --by module")


@app.command("verify")
def verify_command(
    ctx: typer.Context,
    models: Annotated[Optional[List[str]], typer.Argument(help=TARGET_HELP + " Wildcards match registered names.")]
    = None,
    every: Annotated[bool, typer.Option("--all", help="Every registered model.")] = False,
    tools: Annotated[str, typer.Option("--tools", callback=lower,  # any case
                                       help="Comma-separated: fvcore, ptflops, ptflops-aten, torch; "
                                       "or none.")] = "fvcore,ptflops,ptflops-aten,torch",
    layers: Annotated[str, typer.Option("--layers", callback=lower,  # any case
                                        help="Layers shown in table/md: diff (mismatched or "
                                        "unexplained only), all, none.")] = "diff",
    size: SizeOpt = None,
    batch: ModelBatchOpt = None,
    inputs: InputOpt = None,  # as trace's --input
    aux: AuxOpt = None,
    arg: ArgOpt = None,
    channels: ChannelsOpt = None,
    detections: DetectionsOpt = None,
    strict: StrictOpt = False,
    unit: UnitOpt = "macs",
    dtype: DtypeOpt = "fp32",
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    quiet: QuietOpt = False,
) -> int:
    """Analytic spec vs cnncost's trace vs fvcore / ptflops / torch: per layer, per category, every difference
    named. Exit status 1 if a conv or linear layer of a spec disagrees with the real model."""
    from cnncost import progress
    from cnncost.output import emit
    from cnncost.verify import report_data, report_tables, verify_model

    chosen, names = tool_list(tools), targets(models, every)
    if layers not in ("diff", "all", "none"):
        raise CnnCostError(f"--layers must be diff, all or none, got {layers!r}")
    results = progress.each("verify", names, lambda n: verify_model(
        named_model(ctx, n, aux, arg, channels, inputs, detections), size, batch, chosen, strict=strict,
        dtype=dtype))
    for v in results:
        notice([f"{v.model}: {n}" for n in v.trace.notes] + [f"{v.model}: {t} failed: {e}" for t, e in v.errors.items()])
    u = unit_of(unit)
    emit(report_tables(results, u, fmt, layers), fmt, output, data=report_data(results, u))
    bad = [f"{v.model}: {m}" for v in results for m in v.mismatches]
    if bad:
        print(f"cnncost: verify: {len(bad)} conv/linear layer(s) disagree with the real model: "
              + "; ".join(bad[:5]) + (" ..." if len(bad) > 5 else ""), file=sys.stderr)
    return 1 if bad else 0


def tool_list(text: str) -> tuple[str, ...]:
    """--tools as a tuple of known tools ('none' for no tool)."""
    from cnncost.trace.adapters import TOOLS
    chosen = tuple(t.strip() for t in text.split(",") if t.strip() and t.strip() != "none")
    unknown = [t for t in chosen if t not in TOOLS]
    if unknown:
        raise CnnCostError(f"unknown tool {unknown[0]!r}; choose from {', '.join(TOOLS)} (or none)")
    return chosen


def targets(models: list[str] | None, every: bool) -> list[str]:
    """The models to verify: names as given (wildcards over the registry), or every registered model."""
    from cnncost import specs
    if every == bool(models):
        raise CnnCostError("give one or more models, or --all (not both)")
    if every:
        return list(specs.MODELS)
    names = []
    for m in models:
        hits = specs.names(m) if any(ch in m for ch in "*?[") else [m]
        if not hits:
            raise CnnCostError(f"no registered model matches {m!r}")
        names += hits
    return names
