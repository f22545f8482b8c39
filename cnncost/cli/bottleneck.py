"""`cnncost bottleneck`: the lecture's 1x1 reduction example, arithmetic shown."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from cnncost.cli.app import app
from cnncost.cli.options import BatchOpt, FormatOpt, OutputOpt, UnitOpt, unit_of


@app.command()
def bottleneck(
    in_channels: Annotated[int, typer.Option("--in", help="Input channels.")] = 480,
    out_channels: Annotated[int, typer.Option("--out", help="Output channels.")] = 48,
    size: Annotated[int, typer.Option("--size", help="Input height = width.")] = 14,
    kernel: Annotated[int, typer.Option("--kernel", help="Kernel size k of the k x k conv.")] = 5,
    reduce: Annotated[int, typer.Option("--reduce", help="Channels after the 1x1 reduction.")] = 16,
    stride: Annotated[int, typer.Option("--stride", help="Stride of the k x k conv.")] = 1,
    padding: Annotated[Optional[int], typer.Option("--padding", help="Padding of the k x k conv; default k // 2 ('same' for odd k).")] = None,
    groups: Annotated[int, typer.Option("--groups", help="Groups of the k x k conv.")] = 1,
    batch: BatchOpt = 1,
    bias: Annotated[bool, typer.Option("--bias/--no-bias", help="Give every conv a bias.")] = False,
    unit: UnitOpt = "macs",
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
) -> None:
    """A direct k x k conv against a 1x1 reduction then the k x k conv (Inception's trick)."""
    from cnncost.bottleneck import bottleneck_tables, compare_bottleneck
    from cnncost.output import emit

    result = compare_bottleneck(in_channels, out_channels, size, kernel, reduce, stride, groups, batch, bias,
                                unit_of(unit), padding)
    emit(bottleneck_tables(result), fmt, output, data=result)
