"""What command modules share: options declared once (each checked and normalised as it is parsed, so a bad
value is refused before any work starts), the model a command names with its options, the unit, layer views
and notes on stderr."""
from __future__ import annotations

import sys
from typing import Annotated, List, Optional

import typer
from typer._click.core import ParameterSource


def given(ctx: typer.Context, name: str) -> bool:
    """Whether the user gave an option (rather than its default)."""
    return ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP, None)


def output_checked(value: Optional[str]) -> Optional[str]:
    """-o/--output: a writable file path, checked before any work ('-' is stdout)."""
    from cnncost.output import check_output
    return None if value is None else check_output(value)


def format_checked(ctx: typer.Context, param: typer.CallbackParam, value: Optional[str]) -> str:
    """-f/--format in any case; when not given, the one the --output file's extension names (else table)."""
    from cnncost.output import format_for
    return format_for(value if given(ctx, param.name) else None, ctx.params.get("output"))


def lower(value: Optional[str]) -> Optional[str]:
    """A name compared case-insensitively (units, dtypes, devices, modes)."""
    return value.strip().lower() if isinstance(value, str) else value


def unit_checked(value: str) -> str:
    """--unit in any case: macs or flops, refused before any work otherwise."""
    from cnncost.units import unit
    return unit(lower(value)).name


def positive(ctx: typer.Context, param: typer.CallbackParam, value: Optional[int]) -> Optional[int]:
    """A count that must be at least 1 when given (--batch, --channels), refused before any work otherwise."""
    if value is not None and value < 1:
        from cnncost.errors import CnnCostError
        raise CnnCostError(f"--{param.name} must be positive, got {value}")
    return value


def quiet_flag(value: bool) -> bool:
    """--quiet: remember it for the progress bars of this run."""
    from cnncost import progress
    progress.QUIET = bool(value)
    return value


UnitOpt = Annotated[str, typer.Option("--unit", help="macs (multiply-accumulates) or flops (2 x MACs).",
                                      callback=unit_checked)]
FormatOpt = Annotated[str, typer.Option("--format", "-f", callback=format_checked,
                                        help="table, json, csv or md (any case; default: from the --output "
                                             "file's extension .json/.csv/.md, else table).")]
OutputOpt = Annotated[Optional[str], typer.Option("--output", "-o", is_eager=True, callback=output_checked,
                                                  help="Write to this file instead of printing ('-' is stdout).")]
BatchOpt = Annotated[int, typer.Option("--batch", "-b", help="Batch size N of the NCHW input.")]
ModelBatchOpt = Annotated[Optional[int], typer.Option("--batch", "-b", callback=positive,
                                                      help="Batch size N (default 1, or the batch of a factory's "
                                                           "example inputs, which it re-batches).")]
SizeOpt = Annotated[Optional[int], typer.Option("--size", "-s", help="Input height = width (default: the model's own).")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="Element type for bytes moved: fp32, fp16, bf16, ...",
                                       callback=lower)]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", callback=quiet_flag,
                                        help="No progress bar (it is shown on stderr, only on a terminal).")]
AuxOpt = Annotated[Optional[bool], typer.Option("--aux/--no-aux", help="Build a torchvision model's auxiliary heads "
                                                "(GoogLeNet, Inception-v3, FCN, DeepLabV3) or not; default: as "
                                                "torchvision's metadata counts them.")]
ArgOpt = Annotated[Optional[List[str]], typer.Option("--arg", help="KEY=VALUE passed to a FILE.py:FACTORY model; "
                                                     "repeat for several. VALUE is a Python literal (16, 0.5, "
                                                     "(3, 5), 'text'; true/false/none in any case); a bare word "
                                                     "such as relu is a string; anything else is an error.")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Fail if the model runs an op cnncost has no formula for.")]
ChannelsOpt = Annotated[Optional[int], typer.Option("--channels", callback=positive,
                                                    help="Input channels of a FILE.py:FACTORY model (default 3).")]
DetectionsOpt = Annotated[Optional[int], typer.Option("--detections", callback=positive,
                                                      help="Detections per image a torchvision detection model's "
                                                           "heads run on (default: the model's own maximum, e.g. "
                                                           "100).")]
InputOpt = Annotated[Optional[List[str]], typer.Option("--input", "-i", help="An input tensor as SHAPE[:DTYPE], e.g. "
                                                       "1x3x224x224 or 1x10:int64 (integers are zeros); repeat for "
                                                       "several inputs. Replaces --size/--batch/--channels.")]
TARGET_HELP = ("A registered model or alias (resnet50, resnext50), any torchvision model (classification, "
               "segmentation, detection, video, optical flow, quantized), timm:NAME (pip install 'cnncost[timm]'), "
               "or a user model as path/to/file.py:factory or package.module:factory.")


def notice(lines: list[str]) -> None:
    """Notes for the reader on stderr (stdout stays machine-readable)."""
    for line in lines:
        print(f"cnncost: note: {line}", file=sys.stderr)


def unit_of(name: str):
    """The unit a --unit names (macs or flops)."""
    from cnncost.units import unit
    return unit(name)


def named_model(ctx: typer.Context, model: str, aux: bool | None, arg: list[str] | None, channels: int | None,
                inputs: list[str] | None, detections: int | None = None):
    """The model a command names, its model options checked once: --input not beside --size, --batch or
    --channels, --input shapes and --arg values parsed (and a model's own, NAME[key=value, ...], over them),
    --aux / --no-aux only for a model with auxiliary heads."""
    from dataclasses import replace

    from cnncost.trace.models import check_aux, load
    from cnncost.trace.sources import parse_input
    from cnncost.trace.userfile import parse_kwargs
    check_input_clash(ctx, inputs)
    shapes = [parse_input(text) for text in inputs or []]
    name, own = own_arguments(model)
    source = load(name, aux, {**parse_kwargs(arg), **own}, channels, shapes=shapes, detections=detections)
    if given(ctx, "aux"):
        check_aux(source, aux)
    return replace(source, name=model.strip()) if own else source


def own_arguments(model: str) -> tuple[str, dict]:
    """A model named with factory arguments of its own, 'net.py:make[width=8, act=relu]', as (name, arguments);
    the values read as --arg reads them (Python literals; true/false/none; a bare word is a string)."""
    import ast

    from cnncost.errors import CnnCostError
    from cnncost.trace.userfile import parse_value
    text = model.strip()
    if not text.endswith("]") or "[" not in text:
        return text, {}
    name, _, inner = text[:-1].partition("[")
    try:
        call = ast.parse(f"_({inner})", mode="eval").body
    except SyntaxError:
        call = None
    if not isinstance(call, ast.Call) or call.args or any(k.arg is None for k in call.keywords):
        raise CnnCostError(f"{text}: arguments in brackets are key=value pairs separated by commas, e.g. "
                           f"{name}[width=8, act=relu]")
    source = f"_({inner})"
    return name, {k.arg: parse_value(k.arg, ast.get_source_segment(source, k.value)) for k in call.keywords}


def model_options_given(ctx: typer.Context, models: list[str]) -> bool:
    """Whether a model option was given (for a registered model: count the real model, not the paper's spec)."""
    return any(given(ctx, o) for o in ("aux", "arg", "channels", "inputs", "detections")) or \
        any(own_arguments(m)[1] for m in models)


def check_input_clash(ctx: typer.Context, inputs: list[str] | None, options=("size", "batch", "channels")) -> None:
    """--input gives the whole input: refuse it beside any of --size, --batch, --channels the user gave."""
    clash = [f"--{name}" for name in options if inputs and name in ctx.params and given(ctx, name)]
    if clash:
        from cnncost.errors import CnnCostError
        raise CnnCostError(f"--input gives the whole input shape; it cannot be combined with {', '.join(clash)}")


def layer_view(table, totals: dict, by: str, fmt: str, unit: str) -> tuple[list[dict], list[dict], list[dict]]:
    """A per-layer (or grouped) table in a unit: rows for JSON, the totals row, and the rows to show."""
    from cnncost.output import in_unit
    u = unit_of(unit)
    rows = in_unit(table.to_dict("records"), u)
    shown = compact(rows, u) if by == "layer" and fmt in ("table", "md") else blank(rows, fmt)
    return rows, in_unit([totals], u), shown


def blank(rows: list[dict], fmt: str) -> list[dict]:
    """Unknown values (None) shown as empty cells in tables meant to be read; JSON keeps null."""
    if fmt == "json":
        return rows
    return [{k: "" if v is None else v for k, v in r.items()} for r in rows]


def compact(rows: list[dict], unit) -> list[dict]:
    """Per-layer rows narrowed for reading: kernel/stride/groups as one 'window', bytes read + written as one."""
    def window(r: dict) -> str:
        steps = set(r["stride"].split("x")) if r["stride"] else {"1"}
        stride = steps.pop() if len(steps) == 1 else r["stride"]  # one number when every dim strides alike
        return r["kernel"] + (f"/{stride}" if stride != "1" else "") + (f" g{r['groups']}" if r["groups"] != 1 else "")
    return [{"name": r["name"], "kind": r["kind"], "in_shape": r["in_shape"], "out_shape": r["out_shape"],
             "window": window(r), "params": r["params"], unit.name: r[unit.name], "activations": r["activations"],
             "bytes": r["bytes_read"] + r["bytes_written"], "flop_per_byte": r["intensity_flop_per_byte"]}
            for r in rows]
