"""Small markdown helpers shared by every report."""
from __future__ import annotations

from typing import Iterable, Mapping

from cnncost.output import humanize


def table(rows: Iterable[Mapping], human: bool = True, floatfmt: str = ".3g") -> str:
    """Rows as a GitHub markdown table; counts with metric prefixes unless human=False."""
    from tabulate import tabulate

    rows = [dict(r) for r in rows]
    return tabulate(humanize(rows) if human else rows, headers="keys", tablefmt="github", floatfmt=floatfmt,
                    intfmt=",") + "\n"


def image(path: str, alt: str) -> str:
    """A markdown image link."""
    return f"![{alt}]({path})\n"
