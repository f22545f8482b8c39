"""One progress bar for long work (report, verify of several models, bench sweeps, training fits).

Drawn by rich on stderr, so stdout stays clean for JSON/CSV; only when stderr is a terminal, and never with
`--quiet`. It names the item in progress and shows the time left. Use:

    with progress.bar("verify", total=len(models)) as bar:
        for name in models:
            bar.working(name)      # what is running now
            ...
            bar.done(f"{name}: ok")  # one step finished (the text stays until the next item starts)
"""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

QUIET = False  # set by --quiet


class Bar:
    """A rich progress bar with one task; `working` names the item in progress, `done` advances."""

    def __init__(self, progress, task) -> None:
        self.progress, self.task = progress, task

    def working(self, item: str) -> None:
        """Name the item now in progress."""
        self.progress.update(self.task, description=item)

    def done(self, summary: str | None = None, steps: int = 1) -> None:
        """Count finished steps (optionally saying how the last one went)."""
        self.progress.update(self.task, advance=steps, **({"description": summary} if summary else {}))


class Silent:
    """The bar's interface, doing nothing (not a terminal, or --quiet)."""

    def working(self, item: str) -> None:
        """Nothing to show."""

    def done(self, summary: str | None = None, steps: int = 1) -> None:
        """Nothing to show."""


def shown(stream=None) -> bool:
    """Whether progress is drawn: stderr is a terminal and --quiet was not given."""
    stream = stream or sys.stderr
    try:
        return not QUIET and stream.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def bar(title: str, total: int) -> Iterator[Bar | Silent]:
    """A progress bar over `total` steps on stderr (a silent stand-in when it should not be drawn)."""
    if not shown() or total < 1:
        yield Silent()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn(f"{title}: " + "{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield Bar(progress, progress.add_task("starting", total=total))


def each(title: str, items: list, work, label=str) -> list:
    """[work(item) for item in items] under a progress bar naming each item as it runs."""
    results = []
    with bar(title, len(items)) as shown_bar:
        for item in items:
            shown_bar.working(label(item))
            results.append(work(item))
            shown_bar.done()
    return results
