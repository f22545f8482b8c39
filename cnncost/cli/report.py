"""`cnncost report`: regenerate reports/."""
from __future__ import annotations

from typing import Annotated

import typer

from cnncost.cli.app import app


@app.command()
def report(out: Annotated[str, typer.Option("--out", help="Folder for the reports and figures.")] = "reports",
           results: Annotated[str, typer.Option("--results", help="Folder of bench CSVs to report.")] = "results",
           ) -> None:
    """Regenerate every markdown report and plot (deterministic: twice gives identical files)."""
    from pathlib import Path

    from cnncost.report import generate

    files = generate(out, results=Path(results))
    print(f"wrote {len(files)} reports under {out}/ (index: {out}/README.md)")
