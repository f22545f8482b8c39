"""One progress bar for long work (report, verify of several models, bench sweeps, training fits).

Drawn by rich on stderr, so stdout stays clean for JSON/CSV; only when stderr is a terminal, and never with
`--quiet`. It reads plainly: "report: 3/44 training.md, about 40 s left". Steps may weigh differently (a report
page that traces 18 models against one that draws a table): given their expected cost, the time left is the
time taken so far scaled by the cost still to come, not by the count of steps. Use:

    with progress.bar("verify", total=len(models)) as bar:
        for name in models:
            bar.working(name)      # what is running now
            ...
            bar.done(f"{name}: ok")  # one step finished (the text stays until the next item starts)
"""
from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

QUIET = False  # set by --quiet


def about(seconds: float) -> str:
    """A time left as a person says it: 'a few seconds', 'about 40 s', 'about 3 min'."""
    if seconds < 10:
        return "a few seconds left"
    if seconds < 90:
        return f"about {5 * round(seconds / 5)} s left"
    if seconds < 5400:
        return f"about {round(seconds / 60)} min left"
    return f"about {seconds / 3600:.1f} h left"


class Estimate:
    """Time left from the cost done so far: the seconds it took, scaled to the cost still to come, less the time
    since the last step finished (the step running now has been under way that long)."""

    def __init__(self, cost: float, clock=time.monotonic) -> None:
        self.cost, self.done, self.clock = cost, 0.0, clock
        self.start = self.last = clock()

    def finished(self, cost: float) -> None:
        """Steps of this expected cost are done."""
        self.done += cost
        self.last = self.clock()

    def left(self) -> float | None:
        """Seconds left, or None before anything has finished (nothing to scale by yet)."""
        if self.done <= 0:
            return None
        now = self.clock()
        rate = (self.last - self.start) / self.done
        return max(rate * (self.cost - self.done) - (now - self.last), 0.0)


class Bar:
    """A rich progress bar with one task; `working` names the item in progress, `done` advances. Its line is
    drawn afresh at every refresh, so the time left runs down while a step is under way."""

    def __init__(self, title: str, total: int, cost: float) -> None:
        self.progress, self.task, self.title, self.total = None, None, title, total
        self.count, self.item, self.estimate = 0, "starting", Estimate(cost)

    def line(self) -> str:
        """'report: 3/44 training.md, about 40 s left'."""
        left = self.estimate.left() if self.count < self.total else None
        when = f", {about(left)}" if left is not None else ""
        return f"{self.title}: {min(self.count + 1, self.total)}/{self.total} {self.item}{when}"

    def working(self, item: str) -> None:
        """Name the item now in progress."""
        self.item = item

    def done(self, summary: str | None = None, steps: int = 1, cost: float | None = None) -> None:
        """Count finished steps of this expected cost (default: one per step), optionally saying how the last
        one went."""
        self.count += steps
        self.estimate.finished(steps if cost is None else cost)
        if summary:
            self.item = summary
        if self.progress is not None:
            self.progress.update(self.task, completed=self.estimate.done)


class Silent:
    """The bar's interface, doing nothing (not a terminal, or --quiet)."""

    def working(self, item: str) -> None:
        """Nothing to show."""

    def done(self, summary: str | None = None, steps: int = 1, cost: float | None = None) -> None:
        """Nothing to show."""


def shown(stream=None) -> bool:
    """Whether progress is drawn: stderr is a terminal and --quiet was not given."""
    stream = stream or sys.stderr
    try:
        return not QUIET and stream.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def bar(title: str, total: int, cost: float | None = None) -> Iterator[Bar | Silent]:
    """A progress bar over `total` steps on stderr (a silent stand-in when it should not be drawn); cost: the
    expected cost of all steps together, in the unit `done(cost=...)` uses (default: one per step)."""
    if not shown() or total < 1:
        yield Silent()
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, ProgressColumn
    from rich.text import Text

    total_cost = float(total if cost is None else cost)
    shown_bar = Bar(title, total, total_cost)

    class Line(ProgressColumn):
        """The bar's own line, read at every refresh."""

        def render(self, task) -> Text:
            return Text(shown_bar.line())

    with Progress(Line(), BarColumn(), console=Console(stderr=True), transient=True) as progress:
        shown_bar.progress, shown_bar.task = progress, progress.add_task("", total=total_cost)
        yield shown_bar


def each(title: str, items: list, work, label=str) -> list:
    """[work(item) for item in items] under a progress bar naming each item as it runs."""
    results = []
    with bar(title, len(items)) as shown_bar:
        for item in items:
            shown_bar.working(label(item))
            results.append(work(item))
            shown_bar.done()
    return results
