"""`cnncost report`: regenerate reports/."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from cnncost.cli.app import app
from cnncost.cli.options import QuietOpt


@app.command()
def report(out: Annotated[str, typer.Option("--out", help="Folder for the reports and figures.")] = "reports",
           results: Annotated[str, typer.Option("--results", help="Folder of bench CSVs to report.")] = "results",
           jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", help="Worker processes (default: one per "
                                                       "CPU, at most 2; 1 runs everything in this process).")]
           = None,
           quiet: QuietOpt = False,
           ) -> None:
    """Regenerate every markdown report and plot (deterministic: twice gives identical files, whatever --jobs);
    a progress bar on stderr names the report being written and the time left (only on a terminal; --quiet
    turns it off)."""
    from pathlib import Path

    from cnncost.errors import CnnCostError
    from cnncost.report import generate

    if not out.strip() or not results.strip():
        raise CnnCostError("--out and --results need a folder name")
    if results != "results" and not Path(results).is_dir():
        raise CnnCostError(f"--results {results}: no such folder")
    if jobs is not None and not 1 <= jobs <= 64:
        raise CnnCostError(f"--jobs must be between 1 and 64, got {jobs}")
    files = generate(out, results=Path(results), jobs=jobs)
    from cnncost.output import to_stdout
    to_stdout(f"wrote {len(files)} reports under {out}/ (index: {out}/README.md)\n")
