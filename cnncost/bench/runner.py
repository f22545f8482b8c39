"""Measure what a model really does: images/s, latency and memory per batch size, one flat row per case.

Method: the input (the model's own: an image batch, a factory's example inputs re-batched, or --input's shapes)
is made on the device once; inference runs in eval() under inference_mode, training runs a
whole SGD step (forward, cross-entropy, backward, optimizer step) under autocast for fp16/bf16. After the
warm-up, `repeats` blocks of `iters` steps are timed: with CUDA events around every step and one
synchronisation per block on a GPU, with time.perf_counter on the CPU. images/s is the median over blocks of
batch x iters / block time (min and max give the spread); latencies are per step, over all blocks.
"""
from __future__ import annotations

import contextlib
import gc
import platform
import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Callable, Iterable, Iterator

from cnncost.bench.csvio import SCHEMA
from cnncost.bench.devices import BENCH_DTYPES, match
from cnncost.errors import CnnCostError
from cnncost.trace.sources import one_line

MODES = ("infer", "train")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
GRAPHED_MODES = ("reduce-overhead", "max-autotune")  # torch.compile modes that capture CUDA graphs themselves
TORCH_DTYPES = {"fp32": "float32", "tf32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@dataclass(frozen=True)
class Settings:
    """How to run every case of a sweep."""

    device: str = "cpu"
    dtype: str = "fp32"
    mode: str = "infer"
    channels_last: bool = False
    compile: bool = False
    cuda_graphs: bool = False
    warmup: int = 10
    iters: int = 50
    repeats: int = 5
    size: int | None = None
    compile_mode: str = "default"
    threads: int | None = None

    @property
    def on_cuda(self) -> bool:
        """Whether the device is a CUDA GPU."""
        return self.device.startswith("cuda")


MAX_STEPS, MAX_REPEATS = 100_000, 1_000  # a sweep that would run for days is a typo


def max_threads() -> int:
    """The most CPU threads --threads may ask for: 4 per CPU (more only thrashes, and may exhaust memory)."""
    import os
    return 4 * (os.cpu_count() or 1)


def check(settings: Settings) -> Settings:
    """The settings, or a one-line error before anything is built or written."""
    if settings.mode not in MODES:
        raise CnnCostError(f"unknown mode {settings.mode!r}; choose infer or train")
    if settings.dtype not in BENCH_DTYPES:
        raise CnnCostError(f"unknown dtype {settings.dtype!r}; choose one of {', '.join(BENCH_DTYPES)}")
    if settings.warmup < 0 or settings.iters < 1 or settings.repeats < 1:
        raise CnnCostError("--warmup must be >= 0, --iters and --repeats >= 1")
    for name, value, most in (("warmup", settings.warmup, MAX_STEPS), ("iters", settings.iters, MAX_STEPS),
                              ("repeats", settings.repeats, MAX_REPEATS)):
        if value > most:
            raise CnnCostError(f"--{name} must be at most {most:,}, got {value:,}")
    if settings.threads is not None and settings.threads < 1:
        raise CnnCostError(f"--threads must be at least 1, got {settings.threads}")
    if settings.threads is not None and settings.threads > max_threads():
        raise CnnCostError(f"--threads must be at most {max_threads()} (4 x this machine's CPUs), "
                           f"got {settings.threads}")
    if settings.compile_mode not in COMPILE_MODES:
        raise CnnCostError(f"unknown compile mode {settings.compile_mode!r}; choose one of {', '.join(COMPILE_MODES)}")
    if settings.compile_mode != "default" and not settings.compile:
        raise CnnCostError(f"--compile-mode {settings.compile_mode} applies only with --compile")
    if settings.compile and settings.warmup < 2:
        raise CnnCostError("--compile needs --warmup 2 or more, so that compiling is not timed")
    if settings.compile and settings.cuda_graphs and settings.compile_mode in GRAPHED_MODES:
        raise CnnCostError(f"compile mode {settings.compile_mode} captures CUDA graphs itself; drop --cuda-graphs")
    if settings.size is not None and settings.size < 1:
        raise CnnCostError(f"input size must be positive, got {settings.size}")
    if settings.device != "cpu" and not settings.on_cuda:
        raise CnnCostError(f"unknown device {settings.device!r}; choose auto, cuda, cuda:N or cpu")
    if settings.on_cuda:
        check_cuda(settings.device)
    elif settings.dtype == "tf32" or settings.cuda_graphs:
        raise CnnCostError(f"{'tf32' if settings.dtype == 'tf32' else '--cuda-graphs'} needs --device cuda")
    return settings


def check_cuda(device: str) -> None:
    """A one-line error when CUDA (or that GPU index) is not available."""
    import torch
    if not torch.cuda.is_available():
        built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
        raise CnnCostError(f"--device {device}: CUDA is not available here (torch {torch.__version__} {built}); "
                           "use --device cpu")
    index = torch.device(device).index or 0
    if index >= torch.cuda.device_count():
        raise CnnCostError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")


# -- environment -------------------------------------------------------------------------


def driver_version() -> str:
    """The NVIDIA driver version from nvidia-smi, or '' when there is none."""
    import shutil
    import subprocess
    if not shutil.which("nvidia-smi"):
        return ""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.strip().splitlines()[0] if out.strip() else ""


def cpu_name() -> str:
    """The CPU model name (from /proc/cpuinfo on Linux), for CPU rows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=None)
def environment(device: str) -> dict:
    """Where a row was measured: device name, driver, library versions."""
    import torch
    import torchvision
    cuda = device.startswith("cuda")
    return {"device": device, "device_name": torch.cuda.get_device_name(device) if cuda else cpu_name(),
            "driver": driver_version() if cuda else "", "torch": torch.__version__,
            "torchvision": torchvision.__version__, "cuda": torch.version.cuda or "",
            "cudnn": (torch.backends.cudnn.version() or "") if cuda else "",
            "python": platform.python_version()}


def peak_tflops(device_name: str, dtype: str) -> float | None:
    """The dense peak of the device at a dtype from the devices table, or None (CPU, unknown GPU)."""
    device = match(device_name)
    return device.peak_tflops(dtype) if device else None


# -- one case ----------------------------------------------------------------------------


@contextlib.contextmanager
def numerics(settings: Settings):
    """TF32 on for tf32, off for fp32 (cuBLAS and cuDNN), cuDNN autotuning on: restored afterwards."""
    import torch

    from cnncost.compat import fp32_precision
    if not settings.on_cuda:
        yield
        return
    before = torch.backends.cudnn.benchmark
    try:
        with fp32_precision({"tf32": "tf32", "fp32": "ieee"}.get(settings.dtype)):
            torch.backends.cudnn.benchmark = True
            yield
    finally:
        torch.backends.cudnn.benchmark = before


@dataclass
class Prepared:
    """A model on its device, in its mode, dtype and layout, possibly compiled, with its optimizer."""

    module: object
    run: object
    optimizer: object
    size: int
    inputs: Callable[[int], object]  # batch -> the model's Inputs on the device


def prepare(source, settings: Settings, size: int) -> Prepared:
    """Build the model on the device, in the mode, dtype and layout the settings say."""
    import torch

    cast = settings.mode == "infer" and settings.dtype in ("fp16", "bf16")
    module, example = source.instantiate(settings.device)
    module = module.to(
        dtype=getattr(torch, TORCH_DTYPES[settings.dtype]) if cast else None,
        memory_format=torch.channels_last if settings.channels_last else torch.preserve_format)
    module.train(settings.mode == "train")
    run = torch.compile(module, mode=settings.compile_mode, dynamic=False) if settings.compile else module
    optimizer = (torch.optim.SGD(module.parameters(), lr=1e-4, momentum=0.9)
                 if settings.mode == "train" else None)
    return Prepared(module, run, optimizer, size,
                    lambda batch: source.inputs(batch, size, settings.device, example))


def make_step(prepared: Prepared, settings: Settings, batch: int) -> Callable[[], object]:
    """One inference or training step on fixed random inputs already on the device (floats in the inference
    dtype; channels-last where asked)."""
    import torch
    dtype = getattr(torch, TORCH_DTYPES[settings.dtype])
    inputs = prepared.inputs(batch)
    if settings.mode == "infer":
        inputs = inputs.cast(dtype)
    if settings.channels_last:
        inputs = inputs.channels_last()
    args, kwargs = inputs.args, inputs.kwargs
    if settings.mode == "infer":
        return lambda: prepared.run(*args, **kwargs)
    target = torch.randint(0, 10, (batch,), device=settings.device)
    amp = settings.dtype in ("fp16", "bf16")
    device_type = torch.device(settings.device).type
    loss_fn = torch.nn.CrossEntropyLoss()

    def train_step():
        prepared.optimizer.zero_grad(set_to_none=False)
        with torch.autocast(device_type, dtype=dtype, enabled=amp, cache_enabled=not settings.cuda_graphs):
            loss = loss_fn(prepared.run(*args, **kwargs).float(), target)
        loss.backward()
        prepared.optimizer.step()
        return loss
    return train_step


def graphed(step: Callable[[], object], warmup: int) -> Callable[[], object]:
    """The step captured once in a CUDA graph (after warm-up on a side stream) and replayed."""
    import torch
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(max(warmup, 3)):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def timed_block(step: Callable[[], object], iters: int, on_cuda: bool) -> tuple[list[float], float]:
    """Per-step seconds and the whole block's seconds: CUDA events on a GPU, perf_counter on the CPU."""
    if not on_cuda:
        marks = [time.perf_counter()]
        for _ in range(iters):
            step()
            marks.append(time.perf_counter())
        return [b - a for a, b in zip(marks, marks[1:])], marks[-1] - marks[0]
    import torch
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    for start, end in zip(starts, ends):
        start.record()
        step()
        end.record()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) / 1e3 for s, e in zip(starts, ends)], starts[0].elapsed_time(ends[-1]) / 1e3


def timings(step: Callable[[], object], batch: int, settings: Settings) -> dict:
    """Warm up, time the blocks and summarise: images/s (median, min, max) and latency p50/p90 in ms."""
    import numpy as np
    for _ in range(settings.warmup):
        step()
    if settings.on_cuda:
        import torch
        torch.cuda.synchronize()
    latencies, rates = [], []
    for _ in range(settings.repeats):
        steps, seconds = timed_block(step, settings.iters, settings.on_cuda)
        latencies += steps
        rates.append(batch * settings.iters / seconds)
    p50, p90 = np.percentile(np.array(latencies) * 1e3, [50, 90])
    return {"img_per_s": round(statistics.median(rates), 2), "img_per_s_min": round(min(rates), 2),
            "img_per_s_max": round(max(rates), 2), "latency_ms_p50": round(float(p50), 3),
            "latency_ms_p90": round(float(p90), 3)}


def measure(prepared: Prepared, settings: Settings, batch: int) -> dict:
    """Timings and peak memory of one batch size."""
    import torch
    if settings.on_cuda:
        torch.cuda.reset_peak_memory_stats(settings.device)
    grad = torch.inference_mode() if settings.mode == "infer" else contextlib.nullcontext()
    with numerics(settings), grad:
        step = make_step(prepared, settings, batch)
        if settings.cuda_graphs:
            step = graphed(step, settings.warmup)
        out = timings(step, batch, settings)
    if settings.on_cuda:
        out["peak_mem_mb"] = round(torch.cuda.max_memory_allocated(settings.device) / 1e6, 1)
    return out


def free_memory(on_cuda: bool) -> None:
    """Drop garbage and give cached GPU memory back, so one failure does not poison the next case."""
    gc.collect()
    if on_cuda:
        import torch
        torch.cuda.empty_cache()


NOISY_SPREAD = 1.3  # fastest / slowest timed block above this: the machine's noise decides the figure


def noise_warning(rows: list[dict]) -> str | None:
    """A warning when the timed blocks of measured rows disagree by more than NOISY_SPREAD (fastest / slowest
    images/s), naming the widest spread; None when they agree or a row had one block."""
    spreads = [(r["img_per_s_max"] / r["img_per_s_min"], r) for r in rows
               if not r["error"] and int(r["repeats"]) > 1 and r["img_per_s_min"]]
    noisy = [(spread, r) for spread, r in spreads if spread > NOISY_SPREAD]
    if not noisy:
        return None
    spread, r = max(noisy, key=lambda pair: pair[0])
    return (f"timings too noisy to trust: images/s spread {spread:.1f}x between repeats ({r['model']} batch "
            f"{r['batch']}: {r['img_per_s_min']:g} to {r['img_per_s_max']:g}); {len(noisy)} of {len(spreads)} "
            f"row(s) spread more than {NOISY_SPREAD:g}x. Something else is using the machine: stop it, or raise "
            "--iters and --repeats")


# -- rows and sweeps ---------------------------------------------------------------------


def base_row(name: str, batch: int, size: int, settings: Settings) -> dict:
    """The fields every row has, known before measuring."""
    import torch
    row = dict.fromkeys(SCHEMA, "")
    row.update(model=name, mode=settings.mode, batch=batch, size=size, dtype=settings.dtype,
               channels_last=settings.channels_last, compile=settings.compile, cuda_graphs=settings.cuda_graphs,
               compile_mode=settings.compile_mode if settings.compile else "",
               warmup=settings.warmup, iters=settings.iters, repeats=settings.repeats,
               timestamp_utc=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
               threads=torch.get_num_threads(), **environment(settings.device))
    return row


def add_work(row: dict, counts: tuple[int, int, str]) -> dict:
    """MACs per image and, when measured, the achieved TFLOP/s (2 x MACs x img/s) and MFU against the peak."""
    forward, step_macs, source = counts
    row.update(macs_per_image=forward, step_macs_per_image=step_macs, macs_source=source)
    peak = peak_tflops(row["device_name"], row["dtype"]) if row["device"] != "cpu" else None
    row["peak_tflops"] = peak if peak else ""
    if row["img_per_s"] != "":
        achieved = 2 * step_macs * row["img_per_s"] / 1e12
        row["tflops_achieved"] = round(achieved, 4)
        row["mfu"] = round(achieved / peak, 4) if peak else ""
    return row


def work_counts(name: str, size: int, mode: str) -> tuple[int, int, str]:
    """(forward MACs per image, MACs per image of the timed step, source) for a torchvision model name."""
    from cnncost.bench.counts import macs_per_image
    forward, source = macs_per_image(name, size)
    return forward, (macs_per_image(name, size, train=True)[0] if mode == "train" else forward), source


def case(name: str, size: int, prepared: Prepared | None, problem: str, settings: Settings, batch: int,
         counts: tuple[int, int, str] | None) -> dict:
    """The row of one batch size: measured, or carrying the error that stopped it."""
    row = base_row(name, batch, size, settings)
    row["error"] = problem
    if prepared is not None:
        try:
            row.update(measure(prepared, settings, batch))
        except Exception as error:  # noqa: BLE001  (out of memory, compile failure, ...: a row, not a crash)
            row["error"] = one_line(error)[:300]
        free_memory(settings.on_cuda)
    return add_work(row, counts) if counts else row


@contextlib.contextmanager
def cpu_threads(threads: int | None):
    """torch's CPU thread count set for the block (when given) and restored after it."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def plan(models: Iterable, settings: Settings, traced: bool = False) -> list[tuple]:
    """Check the settings and count every model (a name, or a ModelSource with its options in it): (source,
    counts, problem) each; bad input (a size below what a model's forward accepts, too) raises here, early.
    traced: count the sources as they are built (model options given), never a registered name's spec."""
    from cnncost.bench.counts import model_source
    check(settings)
    sources = [model_source(m) if isinstance(m, str) else m for m in models]
    if settings.size is not None:
        for source in sources:
            check_size(source, settings.size)
    return [(source, *counted(source, settings, traced)) for source in sources]


MAX_SIZE = 8192  # the search for a size the forward accepts stops here


def forward_fails(model, source, size: int) -> str:
    """Why the model's forward fails on a batch of one at this input size on meta (one line), or ''."""
    import torch
    inputs = source.inputs(1, size, "meta")
    try:
        with torch.no_grad():
            model(*inputs.args, **inputs.kwargs)
    except CnnCostError:
        raise
    except Exception as error:  # noqa: BLE001  (any failure of the forward: the size may be too small)
        return one_line(error)
    return ""


def min_input_size(source, model=None, most: int = MAX_SIZE) -> int | None:
    """The smallest input size (height = width) the model's forward accepts, found on meta (no memory, no
    weights): doubling from 1 until a size works, then bisecting below it; None if no size up to `most` does."""
    model = source.build("meta") if model is None else model
    failed, size = 0, 1
    while forward_fails(model, source, size):
        if size >= most:
            return None
        failed, size = size, min(2 * size, most)
    while size - failed > 1:
        middle = (failed + size) // 2
        failed, size = (middle, size) if forward_fails(model, source, middle) else (failed, middle)
    return size


def check_size(source, size: int) -> None:
    """A one-line error when the model's forward refuses --size, naming the smallest size it accepts."""
    model, example = source.instantiate("meta")
    if source.example is not None or example is not None or source.shapes:
        return  # the inputs are given, not made at --size
    why = forward_fails(model, source, size)
    if not why:
        return
    least = min_input_size(source, model)
    if least is None or least < size:
        raise CnnCostError(f"{source.name} cannot run at {size} px: {why}")
    raise CnnCostError(f"{source.name} needs an input of at least {least} px (found on meta), got {size}: {why}")


def sweep(models: Iterable, batches: Iterable[int], settings: Settings,
          before: Callable[[str, int], None] | None = None, planned: list[tuple] | None = None) -> Iterator[dict]:
    """Rows for every model x batch size; a failure becomes that row's error and the sweep goes on."""
    planned = plan(models, settings) if planned is None else planned
    batches = list(batches)
    with cpu_threads(settings.threads):
        for source, work, problem in planned:
            yield from model_rows(source, batches, settings, before, work, problem)


def counted(source, settings: Settings, traced: bool = False) -> tuple[tuple | None, str]:
    """(forward, step MACs, source) of a model, or the reason it cannot be counted; bad input raises."""
    from cnncost.bench.counts import source_work
    try:
        if traced:
            return source_work(source, settings.size, settings.mode), ""
        return work_counts(source.name, settings.size or source.resolution, settings.mode), ""
    except CnnCostError:
        raise
    except Exception as error:  # noqa: BLE001  (recorded in the model's rows)
        return None, one_line(error)[:300]


def model_rows(source, batches: list[int], settings: Settings, before, counts, problem: str) -> Iterator[dict]:
    """The rows of one model: built once, measured at every batch size."""
    size = source.width(settings.size)
    prepared = None
    try:
        if not problem:
            prepared = prepare(source, settings, size)
    except Exception as error:  # noqa: BLE001  (a model that cannot be built: every row says why)
        problem = one_line(error)[:300]
    for batch in batches:
        if before:
            before(source.name, batch)
        yield case(source.name, size, prepared, problem, settings, batch, counts)
    del prepared
    free_memory(settings.on_cuda)
