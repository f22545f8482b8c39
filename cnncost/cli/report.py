"""`cnncost report`: regenerate reports/."""
from __future__ import annotations

from typing import Annotated

import typer

from cnncost.cli.app import app


@app.command()
def report(out: Annotated[str, typer.Option("--out", help="Folder for the reports and figures.")] = "reports") -> None:
    """Regenerate every markdown report and plot (deterministic: twice gives identical files)."""
    from cnncost.report import generate

    files = generate(out)
    print(f"wrote {len(files)} reports under {out}/ (index: {out}/README.md)")
