"""`cnncost calibrate`: measure what this machine achieves and write its device profile (JSON) for predict."""
from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from cnncost.cli.app import app
from cnncost.cli.options import QuietOpt, lower, output_checked


def format_checked(value: str) -> str:
    """-f/--format: one of the output formats, in any case."""
    from cnncost.output import check_format
    return check_format(value)


def dtype_list(values: Optional[list[str]]) -> Optional[list[str]]:
    """--dtype fp32,bf16 and --dtype fp32 --dtype bf16 alike: one list of lower-case names (an empty one refused)."""
    from cnncost.errors import CnnCostError
    if not values:
        return None
    names = [name.strip().lower() for value in values for name in value.split(",")]
    if not all(names):
        raise CnnCostError(f"--dtype wants names separated by commas, got {','.join(values)!r}")
    return names


@app.command()
def calibrate(
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or cuda:N.", callback=lower)] = "cpu",
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads for torch (default: torch's).")]
    = None,
    dtype: Annotated[Optional[list[str]], typer.Option(
        "--dtype", help="Dtypes to measure, comma-separated or repeated: fp32, tf32 (cuda), fp16, bf16 (default: "
                        "fp32,bf16 on cpu; fp32,tf32,fp16,bf16 on cuda, those the GPU runs).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Two tiny sizes per class, a few seconds (a smoke test; "
                                                        "not a profile to predict with).")] = False,
    fmt: Annotated[str, typer.Option("--format", "-f", callback=format_checked,
                                     help="What stdout shows: the summary as table, md or csv, or json: the "
                                          "profile itself.")] = "table",
    output: Annotated[Optional[str], typer.Option(
        "--output", "-o", is_eager=True, callback=output_checked,
        help="Write the device profile (JSON) to this file, checked before measuring; stdout still shows the "
             "summary ('-': the profile on stdout).")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Measure matmul FLOP/s, memory bandwidth, the fixed cost per op and each op class's rate per dtype; print a
    summary and write the device profile (JSON) with -o."""
    from cnncost.output import emit, to_stdout, write_atomic
    from cnncost.speed.calibrate import busy, calibrate as measure, check, headline, summary

    checked = check(device, dtype_list(dtype), threads)
    warning = busy()
    if warning:
        print(f"cnncost: warning: {warning}", file=sys.stderr)
    profile = measure(*checked, quick=quick)
    if output and output != "-":
        write_atomic(output, profile.to_json())
    if fmt == "json" or output == "-":
        to_stdout(profile.to_json())
        return
    rates = summary(profile)
    title = f"{profile.key}: seconds = fixed + max(FLOPs / FLOP/s, bytes / bytes/s), FLOPs = 2 x MACs + bias adds"
    device_title = f"{profile.name}, {profile.threads} thread(s), torch {profile.torch}"
    emit({title: rates} if fmt == "csv" else {device_title: headline(profile), title: rates}, fmt)
