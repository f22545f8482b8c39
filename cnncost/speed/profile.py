"""Measured time per layer: a real run under torch.profiler, its op times joined to the rows `trace` (or `train`)
prints, the same names and kinds.

Method:

1. Count. The model runs once on the device under cnncost's counter, which records every aten op it dispatches,
   in order, with the row it books (``trace.costing.OpSequence``): a view or an op inside a function booked whole
   goes with the next row, so its time is its layer's.
2. Time. Plain runs (no profiler, no counter) give ``latency_ms``: the median per-run time of timed blocks after a
   warm-up, as a timm-style loop measures it (CUDA events on a GPU).
3. Profile. ``repeats`` runs under torch.profiler (the CPU's op times; on a GPU its kernels' times), each in turn
   with a timed block of step 2, so that the machine's drift falls on both alike. Each run's events are walked in
   order: an event whose op is the next one the counter saw is that op, and its time
   (children included) is its row's; any other event (aten::linear around its addmm, an autograd wrapper) is
   looked into, its own time going with the first op found inside it; an event with no op of the count inside is
   ``(unattributed)``, a row of its own; the run's wall time outside every top-level event (Python and the
   framework between ops: module calls, hooks, the optimizer's loop; the profiler's own bookkeeping) is the row
   ``(between ops)``. A row's time is its median over the runs.

The rows gain ``time_ms``, ``share``, the achieved ``flop_per_s`` and ``bytes_per_s``, the roofline ``bound`` of
this device (compute or memory, from its device profile) and ``efficiency`` = roofline time / measured time.
Totals: ``latency_ms``, ``profiled_ms`` (the rows' sum), ``coverage`` = profiled / latency, ``overhead`` (a
profiled run's wall time over a plain one's, minus 1) and ``spread`` (max - min over median of the repeats).
"""
from __future__ import annotations

import contextlib
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

from cnncost.errors import CnnCostError

UNATTRIBUTED = "(unattributed)"
BETWEEN = "(between ops)"
LOOKAHEAD = 16  # ops of the count an event may skip to find its own (an op the profiler does not record)
NOISY = 0.2  # a spread of repeats above this says the machine is too busy to trust the times


@dataclass
class Profile:
    """Measured time per row, and the totals that say how far to trust it."""

    model: str
    device: str
    device_name: str
    dtype: str
    batch: int
    train: bool
    threads: int | None
    table: pd.DataFrame
    latency_ms: float
    profiled_ms: float
    coverage: float
    overhead: float
    spread: float
    repeats: int
    notes: list[str] = field(default_factory=list)

    def totals(self) -> dict:
        """The whole run's figures, units in the names."""
        return {"latency_ms": round(self.latency_ms, 4), "profiled_ms": round(self.profiled_ms, 4),
                "coverage": round(self.coverage, 4), "overhead": round(self.overhead, 4),
                "spread": round(self.spread, 4), "img_per_s": round(self.batch / self.latency_ms * 1e3, 2)}


# -- joining a profiler's events to the counted ops ----------------------------------------------------------


def event_time(event, cuda: bool) -> float:
    """An event's time in ms, its children's included: the CPU's, or on a GPU its kernels'."""
    return (event.device_time_total if cuda else event.cpu_time_total) / 1e3


def join(roots: list, ops: list[list], cuda: bool = False) -> tuple[dict[int | None, float], int]:
    """Time per row (None: unattributed) from a run's top-level profiler events and the ops the count saw in
    order ([aten name, row]); and how many of those ops were found."""
    times: dict[int | None, float] = {}
    position, found = 0, 0

    def add(row, ms: float) -> None:
        times[row] = times.get(row, 0.0) + ms

    def visit(event) -> int | None:
        """Book an event; the row it went to (None where nothing inside it was counted)."""
        nonlocal position, found
        end = min(position + LOOKAHEAD, len(ops))
        match = next((k for k in range(position, end) if ops[k][0] == event.name), None)
        if match is not None:
            position, found = match + 1, found + 1
            add(ops[match][1], event_time(event, cuda))
            return ops[match][1]
        children = sorted(event.cpu_children, key=lambda e: e.time_range.start)
        rows = [visit(child) for child in children]
        own = event_time(event, cuda) - sum(event_time(c, cuda) for c in children)
        first = next((r for r in rows if r is not None), None)
        add(first if any(r is not None for r in rows) else None, max(own, 0.0))
        return first

    for event in sorted(roots, key=lambda e: e.time_range.start):
        visit(event)
    return times, found


def top_level(events) -> list:
    """The events that no other event contains (every thread's)."""
    return [e for e in events if e.cpu_parent is None]


# -- running ----------------------------------------------------------------------------------------------------


def synchronize(device: str) -> None:
    """Wait for the device (a GPU's queued kernels) to finish."""
    if device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def in_turns(run: Callable[[], Any], device: str, ops: list[list], warmup: int, iters: int, repeats: int
             ) -> tuple[list[float], list[dict], list[float], list[int]]:
    """`warmup` runs, then `repeats` turns of a block of `iters` plain runs (milliseconds per run) and one profiled
    run: taken in turns, so that the machine's drift falls on both alike."""
    from cnncost.speed.timing import clock_for
    for _ in range(warmup):
        run()
    synchronize(device)
    clock = clock_for(device)
    plain, times, walls, found = [], [], [], []
    for _ in range(repeats):
        plain.append(clock.block(run, iters) / iters * 1e3)
        per_row, wall, n = profiled(run, device, ops)
        times.append(per_row)
        walls.append(wall)
        found.append(n)
    return plain, times, walls, found


# What the profiler's C++ side prints on file descriptor 2 at each start and stop (and, without a GPU, its failed
# probe for one): kept off the user's stderr; every other line passes through.
KINETO_CHATTER = re.compile(r"^(USDT:|ERROR:.*gpuGetDeviceCount|\[W.*(CPUAllocator|profiler))")


@contextlib.contextmanager
def quiet_profiler():
    """File descriptor 2 caught while the profiler runs; its lines, the profiler's chatter left out, replayed."""
    try:
        err = sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(err)
    with tempfile.TemporaryFile(mode="w+b") as caught:
        os.dup2(caught.fileno(), err)
        try:
            yield
        finally:
            os.dup2(saved, err)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode(errors="replace").splitlines()
                    if not KINETO_CHATTER.match(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def profiled(run: Callable[[], Any], device: str, ops: list[list]) -> tuple[dict, float, int]:
    """One run under the profiler: time per row, its wall milliseconds, and how many counted ops were found."""
    from torch.profiler import ProfilerActivity, profile
    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    synchronize(device)
    with quiet_profiler(), profile(activities=activities) as prof:
        start = time.perf_counter()
        run()
        synchronize(device)
        wall = (time.perf_counter() - start) * 1e3
    roots = top_level(prof.events())
    per_row, found = join(roots, ops, cuda)
    per_row[BETWEEN] = max(wall - sum(event_time(e, cuda) for e in roots), 0.0)
    return per_row, wall, found


def spread(values: list[float]) -> float:
    """(max - min) / median of repeated measurements."""
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle if middle else 0.0


def timed_rows(table: pd.DataFrame, runs: list[dict]) -> pd.DataFrame:
    """The table with each row's median time over the profiled runs, then the (unattributed) and (between ops)
    rows."""
    table = table.copy()
    table["time_ms"] = [statistics.median(run.get(i, 0.0) for run in runs) for i in range(len(table))]
    blank = {c: ("" if table[c].dtype == object else 0) for c in table.columns}
    named = [{**blank, "name": name, "kind": name, "category": "other",
              "time_ms": statistics.median(run.get(key, 0.0) for run in runs)}
             for key, name in ((None, UNATTRIBUTED), (BETWEEN, BETWEEN))]
    return pd.concat([table, pd.DataFrame(named)], ignore_index=True)


def work(table: pd.DataFrame, train: bool) -> tuple[pd.Series, pd.Series | None]:
    """Each row's FLOPs (2 x MACs + bias adds, every phase of a training step) and bytes (a forward's only)."""
    if train:
        from cnncost.trace.train import MACS
        flops = 2 * table[list(MACS)].sum(axis=1) + table.bias_adds + table.grad_bias_adds
        return flops, None
    return 2 * table.macs + table.bias_adds, table.bytes_read + table.bytes_written


def with_rates(table: pd.DataFrame, train: bool, roof) -> pd.DataFrame:
    """Share of time, achieved FLOP/s and bytes/s, the roofline bound on this device and the efficiency."""
    flops, moved = work(table, train)
    seconds = table.time_ms / 1e3
    table["share"] = (table.time_ms / max(table.time_ms.sum(), 1e-12)).round(4)
    table["flop_per_s"] = (flops / seconds.where(seconds > 0)).fillna(0.0).round(1)
    table["bytes_per_s"] = (moved / seconds.where(seconds > 0)).fillna(0.0).round(1) if moved is not None else None
    if roof is None:
        table["bound"], table["efficiency"] = "", None
        return table
    peak, bandwidth = roof
    compute = flops / peak
    memory = moved / bandwidth if moved is not None else compute * 0
    table["bound"] = ["compute" if c >= m else "memory" if m > 0 else "" for c, m in zip(compute, memory)]
    best = pd.concat([compute, memory], axis=1).max(axis=1)
    table["efficiency"] = (best / seconds.where(seconds > 0)).fillna(0.0).round(4)
    return table


# -- the front door --------------------------------------------------------------------------------------------


def check_device(device: str) -> str:
    """cpu, cuda or cuda:N, with CUDA present for a GPU; one line otherwise."""
    device = device.strip().lower()
    if device != "cpu" and not device.startswith("cuda"):
        raise CnnCostError(f"--device must be cpu, cuda or cuda:N, got {device!r}")
    if device.startswith("cuda"):
        from cnncost.bench.runner import check_cuda
        check_cuda(device)
    return device


def roofline(device: str, dtype: str, profile_path: str | None, threads: int | None):
    """(peak FLOP/s, bandwidth bytes/s) of this device: its calibrated profile (--profile, or the default one), a
    GPU's data sheet; None (with a note) where there is neither."""
    from cnncost.speed.estimate import default_profile_path, resolve
    if profile_path:
        profile = resolve(profile_path, threads)
    elif device.startswith("cuda"):
        import torch

        from cnncost.bench.devices import match
        from cnncost.speed.constants import datasheet_profile
        entry = match(torch.cuda.get_device_name(device))
        if entry is None:
            return None
        profile = datasheet_profile(entry)
    elif default_profile_path().is_file():
        profile = resolve("cpu", threads)
    else:
        return None
    key = dtype if dtype in profile.peak_flops else "fp32"
    return profile.peak_flops[key], profile.bandwidth_bytes_per_s


def profile_model(source, device: str = "cpu", dtype: str = "fp32", batch: int | None = None,
                  size: int | None = None, channels_last: bool = False, train: bool = False,
                  threads: int | None = None, repeats: int = 3, warmup: int = 2, iters: int = 3,
                  profile_path: str | None = None) -> Profile:
    """Measured time per row of a model source on a real device (see the module's docstring for the method)."""
    import torch

    from cnncost.bench.runner import cpu_threads
    from cnncost.trace.costing import OpSequence
    from cnncost.trace.step import AUTOCAST, autocast, ready_optimizer, targets_for, training_step
    from cnncost.trace.train import batch_of

    device = check_device(device)
    if dtype not in AUTOCAST:
        raise CnnCostError(f"--dtype must be one of {', '.join(AUTOCAST)} (fp16 / bf16: autocast), got {dtype!r}")
    if repeats < 1 or warmup < 0 or iters < 1:
        raise CnnCostError("--repeats and --iters must be at least 1, --warmup at least 0")
    with cpu_threads(threads):
        used_threads = torch.get_num_threads()
        model, example = source.instantiate(device)
        inputs = source.inputs(batch, size, device, example)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            inputs = inputs.channels_last()
        images = batch_of(inputs, batch)
        sequence = OpSequence()
        if train:
            from cnncost.trace.train import trace_training
            targets = targets_for(images, device)
            opt = ready_optimizer(model, "sgd")
            counted = trace_training(model, inputs, targets, "sgd", dtype, name=source.name, device=device,
                                     sequence=sequence, opt=opt)

            def run():
                training_step(model, inputs, targets, opt, dtype, device)
        else:
            from cnncost.trace.counter import count_module
            model.eval()
            with autocast(device, dtype):
                counted = count_module(model, inputs, source.name, dtype=dtype, sequence=sequence)

            def run():
                with torch.inference_mode(), autocast(device, dtype):
                    model(*inputs.args, **inputs.kwargs)
        plain, runs, walls, found = in_turns(run, device, sequence.ops, warmup, iters, repeats)
    table = with_rates(timed_rows(counted.table, runs), train, roofline(device, dtype, profile_path, threads))
    latency_ms, profiled_ms = statistics.median(plain), float(table.time_ms.sum())
    result = Profile(source.name, device, device_label(device), dtype, images, train, used_threads if device ==
                     "cpu" else None, table, latency_ms, profiled_ms, profiled_ms / latency_ms,
                     statistics.median(walls) / latency_ms - 1, max(spread(plain), spread(walls)), repeats,
                     list(counted.notes))
    missed = len(sequence.ops) - min(found)
    if missed:
        result.notes.append(f"{missed} of the {len(sequence.ops)} counted ops had no profiler event of their own "
                            f"(their time is inside another op's)")
    if result.spread > NOISY:
        result.notes.append(f"the machine is too noisy to trust these times: repeats spread {result.spread:.0%} "
                            f"(max - min over median); run again on a quiet machine, or with more --repeats")
    if "efficiency" in table and table.efficiency.isna().all():
        result.notes.append("no roofline for this device: run `cnncost calibrate -o FILE` and pass --profile FILE "
                            "(bound and efficiency are left empty)")
    return result


def device_label(device: str) -> str:
    """The device as torch names it (the CPU's model name)."""
    if device.startswith("cuda"):
        import torch
        return torch.cuda.get_device_name(device)
    from cnncost.speed.device import cpu_name
    return cpu_name()
