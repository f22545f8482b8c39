"""`cnncost trace` (our meta-device counter on a real model) and `cnncost verify` (analytic vs trace vs tools)."""
from __future__ import annotations

import sys
from typing import Annotated, List, Optional

import typer

from cnncost.cli.app import app
from cnncost.cli.options import BatchOpt, DtypeOpt, FormatOpt, OutputOpt, SizeOpt, UnitOpt

AuxOpt = Annotated[bool, typer.Option("--aux", help="Build GoogLeNet / Inception-v3 with their auxiliary heads.")]
ArgOpt = Annotated[Optional[List[str]], typer.Option("--arg", help="KEY=VALUE passed to a FILE.py:FACTORY model; "
                                                     "repeat for several.")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Fail if the model runs an op cnncost has no formula for.")]
ChannelsOpt = Annotated[int, typer.Option("--channels", help="Input channels of a FILE.py:FACTORY model.")]
TARGET_HELP = ("A registered model or alias (resnet50, resnext50), any torchvision classification model, "
               "or a user model as path/to/file.py:factory or package.module:factory.")


def notice(lines: list[str]) -> None:
    """Notes for the reader on stderr (stdout stays machine-readable)."""
    for line in lines:
        print(f"cnncost: note: {line}", file=sys.stderr)


@app.command()
def trace(
    model: Annotated[str, typer.Argument(help=TARGET_HELP)],
    size: SizeOpt = None,
    batch: BatchOpt = 1,
    by: Annotated[str, typer.Option("--by", help="layer, stage, kind, category or module (see --depth).")] = "layer",
    depth: Annotated[int, typer.Option("--depth", help="Module-tree depth for --by module.")] = 1,
    device: Annotated[str, typer.Option("--device", help="meta (no memory, any batch) or cpu.")] = "meta",
    aux: AuxOpt = False,
    arg: ArgOpt = None,
    channels: ChannelsOpt = 3,
    strict: StrictOpt = False,
    unit: UnitOpt = "macs",
    dtype: DtypeOpt = "fp32",
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
) -> None:
    """Count a real PyTorch model with cnncost's own tracer: one row per module call and op kind."""
    from cnncost.cli.models import layer_view, prepare
    from cnncost.errors import CnnCostError
    from cnncost.formulas import dtype_bytes
    from cnncost.output import emit
    from cnncost.trace.counter import rollup, trace as count
    from cnncost.trace.models import load
    from cnncost.trace.userfile import parse_kwargs

    u = prepare(fmt, unit)
    dtype_bytes(dtype)
    if device not in ("meta", "cpu") or depth < 1:
        raise CnnCostError(f"--device must be meta or cpu and --depth at least 1, got {device!r} and {depth}")
    result = count(load(model, aux, parse_kwargs(arg), channels), batch, size, device, strict, dtype)
    table = rollup(result, depth) if by == "module" else result.by(by).drop(columns="flops")
    rows, totals, shown = layer_view(table, result.totals(), by, fmt, u)
    shape = "x".join(map(str, result.input_shape))
    data = {"model": result.model, "source": result.source, "input_shape": list(result.input_shape),
            "dtype": dtype, "unit": u.name, "by": by, "rows": rows, "totals": totals[0],
            "unsupported": result.unsupported, "notes": result.notes}
    tables = {f"{result.model} on {shape}, traced on {device}, by {by} ({u.label})": shown,
              "Totals (the sum of the rows)": totals}
    if result.unsupported:
        tables["Ops with no formula (counted as 0)"] = [{"op": k, "calls": n} for k, n in result.unsupported.items()]
    notice(result.notes)
    emit(tables, fmt, output, data=data)


@app.command()
def verify(
    models: Annotated[Optional[List[str]], typer.Argument(help=TARGET_HELP + " Wildcards match registered names.")]
    = None,
    every: Annotated[bool, typer.Option("--all", help="Every registered model.")] = False,
    tools: Annotated[str, typer.Option("--tools", help="Comma-separated: fvcore, ptflops, ptflops-aten, torch; "
                                       "or none.")] = "fvcore,ptflops,ptflops-aten,torch",
    layers: Annotated[str, typer.Option("--layers", help="Layers shown in table/md: diff (mismatched or "
                                        "unexplained only), all, none.")] = "diff",
    size: SizeOpt = None,
    batch: BatchOpt = 1,
    aux: AuxOpt = False,
    arg: ArgOpt = None,
    strict: StrictOpt = False,
    unit: UnitOpt = "macs",
    dtype: DtypeOpt = "fp32",
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
) -> int:
    """Analytic spec vs cnncost's trace vs fvcore / ptflops / torch: per layer, per category, every difference
    named. Exit status 1 if a conv or linear layer of a spec disagrees with the real model."""
    from cnncost.cli.models import prepare
    from cnncost.output import emit
    from cnncost.trace.userfile import parse_kwargs
    from cnncost.verify import report_data, report_tables, verify as check

    u = prepare(fmt, unit)
    chosen, names = tool_list(tools), targets(models, every)
    if layers not in ("diff", "all", "none"):
        from cnncost.errors import CnnCostError
        raise CnnCostError(f"--layers must be diff, all or none, got {layers!r}")
    results = [check(n, size, batch, chosen, aux, strict, dtype, parse_kwargs(arg)) for n in names]
    for v in results:
        notice([f"{v.model}: {n}" for n in v.trace.notes] + [f"{v.model}: {t} failed: {e}" for t, e in v.errors.items()])
    data = report_data(results, u)
    emit(report_tables(results, u, fmt, layers), fmt, output, data=data)
    bad = [f"{v.model}: {m}" for v in results for m in v.mismatches]
    if bad:
        print(f"cnncost: verify: {len(bad)} conv/linear layer(s) disagree with the real model: "
              + "; ".join(bad[:5]) + (" ..." if len(bad) > 5 else ""), file=sys.stderr)
    return 1 if bad else 0


def tool_list(text: str) -> tuple[str, ...]:
    """--tools as a tuple of known tools ('none' for no tool)."""
    from cnncost.errors import CnnCostError
    from cnncost.trace.adapters import TOOLS
    chosen = tuple(t.strip() for t in text.split(",") if t.strip() and t.strip() != "none")
    unknown = [t for t in chosen if t not in TOOLS]
    if unknown:
        raise CnnCostError(f"unknown tool {unknown[0]!r}; choose from {', '.join(TOOLS)} (or none)")
    return chosen


def targets(models: list[str] | None, every: bool) -> list[str]:
    """The models to verify: names as given (wildcards over the registry), or every registered model."""
    from cnncost import specs
    from cnncost.errors import CnnCostError
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
