"""Run the parts of the reports on one or more CPU cores, costliest first.

A report page is made of parts (one model's section, one figure's page) that share nothing but their inputs;
each part is a module-level function called with plain arguments, returning text or small records. With one
job they run here, in order. With more, worker processes forked from this one (so torch and matplotlib are
imported once) take them costliest first, so that the long parts do not come last; a part that holds much
memory (a real forward of a large model) never runs beside another such part, so two workers stay within the
memory of one. Each worker runs torch on one thread: the workers themselves fill the cores.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator


@dataclass(frozen=True)
class Part:
    """One unit of work: run(*args), expected to take `cost` CPU seconds; heavy: it holds much memory."""

    key: str
    run: Callable[..., Any]
    args: tuple = ()
    cost: float = 1.0
    heavy: bool = False


@dataclass
class Page:
    """A report file: its parts, and how their results (in the parts' order) become its text."""

    name: str
    title: str
    about: str
    parts: list[Part]
    assemble: Callable[[list], str] = field(default=lambda results: results[0])


def default_jobs() -> int:
    """Worker processes worth starting: one per CPU this process may use, at most two (the parts are few and
    uneven: a third worker would mostly wait for the longest part)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(2, cpus))


def worker_start() -> None:
    """A worker: torch on one thread (the workers fill the cores); Ctrl-C is the parent's to handle."""
    import signal

    import torch
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def call(part: Part) -> Any:
    """Run a part, then give the C allocator's free pages back to the system (a real forward of a large model
    leaves hundreds of MB there), so that between parts a worker holds little beyond what it was forked with."""
    import ctypes
    result = part.run(*part.args)
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    return result


def in_order(parts: list[Part]) -> Iterator[tuple[Part, Any]]:
    """Each part run here, one after the other."""
    for part in parts:
        yield part, call(part)


def next_part(pending: list[Part], heavy_running: bool) -> Part | None:
    """The costliest pending part that may start now (no second heavy one), or None."""
    allowed = [p for p in pending if not (p.heavy and heavy_running)]
    return max(allowed, key=lambda p: p.cost) if allowed else None


def in_parallel(parts: list[Part], jobs: int, started: Callable[[], None] = lambda: None
                ) -> Iterator[tuple[Part, Any]]:
    """Each part run by `jobs` forked workers, costliest first, yielded as it finishes; started() is called once
    the workers exist (start threads, such as a progress bar's, only then: forking copies no threads). A failing
    part, or Ctrl-C, stops every worker at once."""
    import multiprocessing
    import queue

    finished: queue.Queue = queue.Queue()
    pending, running = list(parts), []
    pool = multiprocessing.get_context("fork").Pool(jobs, initializer=worker_start)
    try:
        def submit() -> None:
            while len(running) < jobs:
                part = next_part(pending, any(p.heavy for p in running))
                if part is None:
                    return
                pending.remove(part)
                running.append(part)
                pool.apply_async(call, (part,), callback=lambda r, part=part: finished.put((part, r, None)),
                                 error_callback=lambda e, part=part: finished.put((part, None, e)))

        submit()
        started()
        while running:
            part, result, error = finished.get()
            if error is not None:
                raise error
            running.remove(part)
            submit()
            yield part, result
        pool.close()
    finally:
        pool.terminate()
        pool.join()


def run(pages: list[Page], jobs: int, done: Callable[[Part, Page | None, str | None], None] = lambda *_: None,
        started: Callable[[], None] = lambda: None) -> dict[str, str]:
    """Every page's text by name, assembled as its last part finishes; done(part, page, text) after each part
    (page and text None while parts of the page are still to come). started() is called when the work begins
    (see in_parallel)."""
    parts = [part for page in pages for part in page.parts]
    if len({p.key for p in parts}) != len(parts):
        raise ValueError("two report parts share a key")
    page_of = {part.key: page for page in pages for part in page.parts}
    results: dict[str, Any] = {}
    texts: dict[str, str] = {}
    if jobs <= 1:
        started()
    for part, result in in_order(parts) if jobs <= 1 else in_parallel(parts, jobs, started):
        results[part.key] = result
        page = page_of[part.key]
        complete = all(p.key in results for p in page.parts)
        if complete:
            texts[page.name] = page.assemble([results[p.key] for p in page.parts])
        done(part, page, texts[page.name]) if complete else done(part, None, None)
    return texts
