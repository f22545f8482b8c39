"""The report's parts run in order or on forked workers, costliest first, giving the same pages."""
import os

import pytest

from cnncost.report.schedule import Page, Part, next_part, run


def square(n: int) -> int:
    return n * n


def worker_pid(_: int) -> int:
    return os.getpid()


def fails(n: int) -> int:
    raise ValueError(f"part {n} failed")


def pages_of(function) -> list[Page]:
    """Two pages of three and two parts; each page's text lists its parts' results in the page's order."""
    parts = [Part(f"p{n}", function, (n,), cost=float(n)) for n in range(5)]
    assemble = lambda results: ",".join(map(str, results))  # noqa: E731
    return [Page("a.md", "A", "", parts[:3], assemble), Page("b.md", "B", "", parts[3:], assemble)]


def test_workers_give_the_pages_that_running_in_order_gives():
    serial, finished = run(pages_of(square), jobs=1), []
    parallel = run(pages_of(square), jobs=2, done=lambda part, page, text: finished.append((part.key, text)))
    assert serial == parallel == {"a.md": "0,1,4", "b.md": "9,16"}
    assert sorted(key for key, _ in finished) == ["p0", "p1", "p2", "p3", "p4"]
    assert sorted(text for _, text in finished if text) == ["0,1,4", "9,16"]  # each page once, when complete


def test_parts_run_in_forked_workers():
    pids = run(pages_of(worker_pid), jobs=2)
    assert str(os.getpid()) not in ",".join(pids.values())


def test_a_failing_part_stops_the_run():
    with pytest.raises(ValueError, match="failed"):
        run(pages_of(fails), jobs=2)


def test_a_heavy_part_waits_for_another_heavy_one_but_not_for_light_ones():
    big, bigger, light = Part("big", square, cost=5, heavy=True), Part("bigger", square, cost=9, heavy=True), \
        Part("light", square, cost=1)
    assert next_part([big, bigger, light], heavy_running=False) is bigger
    assert next_part([big, light], heavy_running=True) is light
    assert next_part([big], heavy_running=True) is None
