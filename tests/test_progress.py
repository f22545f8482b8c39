"""The progress bar's line: steps weighed by their expected cost, the time left said plainly."""
from cnncost import progress
from cnncost.progress import Bar, Estimate, about


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_time_left_scales_the_time_taken_by_the_cost_to_come():
    clock = Clock()
    estimate = Estimate(100.0, clock)
    assert estimate.left() is None  # nothing finished: nothing to scale by
    clock.now = 20.0
    estimate.finished(10.0)  # 10 of 100 cost units in 20 s: 2 s per unit
    assert estimate.left() == 2 * 90
    clock.now = 50.0  # 30 s into the next step: that much less to go
    assert estimate.left() == 2 * 90 - 30
    clock.now = 1000.0
    assert estimate.left() == 0.0


def test_a_cheap_first_page_does_not_promise_a_short_wait():
    # 44 pages: one costing 1 unit, one (training.md) costing 60, the rest 1 each. Counting pages, one finished
    # page in 1 s would promise 43 s left; weighing them, the 102 units to come take about 102 s.
    clock = Clock()
    estimate = Estimate(1 + 60 + 42, clock)
    clock.now = 1.0
    estimate.finished(1)
    assert estimate.left() == 102


def test_the_line_reads_plainly(monkeypatch):
    clock = Clock()
    bar = Bar("report", 44, 100.0)
    bar.estimate = Estimate(100.0, clock)
    bar.working("overview.md")
    assert bar.line() == "report: 1/44 overview.md"
    clock.now = 2.0
    for _ in range(2):
        bar.done(cost=5.0)  # 10 units in 2 s
    bar.working("training.md")
    assert bar.line() == "report: 3/44 training.md, about 20 s left"  # 90 units at 0.2 s each: 18 s


def test_about():
    assert [about(s) for s in (3, 18, 42, 89, 125, 3000, 9000)] == [
        "a few seconds left", "about 20 s left", "about 40 s left", "about 90 s left", "about 2 min left",
        "about 50 min left", "about 2.5 h left"]


def test_silent_off_a_terminal():
    with progress.bar("report", 3, cost=10) as shown:
        assert isinstance(shown, progress.Silent)
        shown.working("x")
        shown.done(cost=4)
