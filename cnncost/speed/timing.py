"""Time one call of a function on a device: best and median of repeated blocks of calls.

Method: the first call is untimed (it builds kernels and caches); then single calls are timed until a short
warm-up time has passed, which estimates one call's time and so how many calls make a block long enough to time
well (``block_s``); where one call is that long already, the warm-up calls count as blocks. Blocks are then timed until the time budget is spent (at least ``min_blocks``, at most
``max_blocks``); a call's time is a block's time over its calls. On the CPU a block is timed with
time.perf_counter; on a GPU with a pair of CUDA events around the block and one synchronisation after it, so the
time is the GPU's and the host's launches overlap it.

Blocks are short and many, and the best one is kept: on a CPU shared with other work, an op run by several threads
now and then waits a whole scheduler time slice for one of them (tens of milliseconds for a 40 µs op), and a short
block is the likelier to miss every such stall.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable


class TooSlow(Exception):
    """One call took longer than the caller allows (its seconds are the argument)."""


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the best and the median block, and how they were taken."""

    best_s: float
    median_s: float
    blocks: int
    calls_per_block: int


class CpuClock:
    """Blocks timed by the host's clock (time.perf_counter)."""

    def block(self, fn: Callable[[], object], calls: int) -> float:
        """Seconds of `calls` calls of fn."""
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return time.perf_counter() - start


class CudaClock:
    """Blocks timed on the GPU: CUDA events recorded around the block, one synchronisation after it."""

    def block(self, fn: Callable[[], object], calls: int) -> float:
        """Seconds of `calls` calls of fn, as the GPU's events measure them."""
        import torch
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3  # events give milliseconds


CLOCKS = {"cpu": CpuClock, "cuda": CudaClock}


def clock_for(device: str) -> CpuClock | CudaClock:
    """The clock for a device: 'cpu', or 'cuda' / 'cuda:N'."""
    return CLOCKS[device.partition(":")[0]]()


def measure(fn: Callable[[], object], device: str = "cpu", budget_s: float = 0.15, block_s: float = 0.0005,
            warmup_s: float = 0.01, min_blocks: int = 5, max_blocks: int = 400, max_call_s: float = math.inf) -> Timing:
    """Seconds per call of fn on a device (see the module's docstring for the method); TooSlow as soon as a timed
    call takes longer than max_call_s."""
    clock = clock_for(device)
    clock.block(fn, 1)
    singles: list[float] = []
    started = time.perf_counter()
    while not singles or time.perf_counter() - started < warmup_s:
        singles.append(clock.block(fn, 1))
        if singles[-1] > max_call_s:
            raise TooSlow(singles[-1])
    number = max(1, min(100_000, math.ceil(block_s / max(min(singles), 1e-9))))
    times = singles if number == 1 else []  # calls long enough to time alone are blocks already
    started = time.perf_counter()
    while len(times) < min_blocks or (len(times) < max_blocks and time.perf_counter() - started < budget_s):
        times.append(clock.block(fn, number) / number)
    return Timing(min(times), statistics.median(times), len(times), number)
