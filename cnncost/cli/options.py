"""Options shared by every command, declared once."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

UnitOpt = Annotated[str, typer.Option("--unit", help="macs (multiply-accumulates) or flops (2 x MACs).")]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="table, json, csv or md.")]
OutputOpt = Annotated[Optional[str], typer.Option("--output", "-o", help="Write to this file instead of printing.")]
BatchOpt = Annotated[int, typer.Option("--batch", "-b", help="Batch size N of the NCHW input.")]
SizeOpt = Annotated[Optional[int], typer.Option("--size", "-s", help="Input height = width (default: the model's own).")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="Element type for bytes moved: fp32, fp16, bf16, ...")]
