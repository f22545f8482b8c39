"""Options shared by every command, declared once; each is checked and normalised as it is parsed, so a bad
value is refused before any work starts."""
from __future__ import annotations

from typing import Annotated, Optional

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


def quiet_flag(value: bool) -> bool:
    """--quiet: remember it for the progress bars of this run."""
    from cnncost import progress
    progress.QUIET = bool(value)
    return value


UnitOpt = Annotated[str, typer.Option("--unit", help="macs (multiply-accumulates) or flops (2 x MACs).",
                                      callback=lower)]
FormatOpt = Annotated[str, typer.Option("--format", "-f", callback=format_checked,
                                        help="table, json, csv or md (any case; default: from the --output "
                                             "file's extension .json/.csv/.md, else table).")]
OutputOpt = Annotated[Optional[str], typer.Option("--output", "-o", is_eager=True, callback=output_checked,
                                                  help="Write to this file instead of printing ('-' is stdout).")]
BatchOpt = Annotated[int, typer.Option("--batch", "-b", help="Batch size N of the NCHW input.")]
SizeOpt = Annotated[Optional[int], typer.Option("--size", "-s", help="Input height = width (default: the model's own).")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="Element type for bytes moved: fp32, fp16, bf16, ...",
                                       callback=lower)]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", callback=quiet_flag,
                                        help="No progress bar (it is shown on stderr, only on a terminal).")]
