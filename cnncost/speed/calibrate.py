"""What this machine really achieves: micro-benchmarks per op class and dtype, fitted into a DeviceProfile.

Method.
- Cases: each op class (device.OP_CLASSES) registers a few layers taken from real networks (ResNet-50,
  ResNeXt-50, EfficientNet-B0, MobileNetV3, ViT-B/16, Swin-T, ConvNeXt-T, DenseNet, FPN and DeepLab heads), from a
  tiny one (the fixed cost) to large ones, each at several batch sizes.
- Accounting, as predict does it: each case is traced on the meta device by cnncost.trace.count in the dtype
  measured, and its FLOPs and bytes are device.work of its rows: FLOPs = 2 x MACs + bias adds, bytes = bytes read +
  bytes written. A fused call is one op with all its rows (scaled_dot_product_attention is three rows: the two
  matrix products, the scale and the softmax).
- Timing: cnncost.speed.timing.measure, blocks of repeated calls under torch.inference_mode (eval modules, inputs
  and weights cast to the dtype). As in a model, where each layer's weights and input are not the ones it just
  used, the calls go round enough copies of the case (its module and inputs) that together they outgrow the
  caches (COLD_BYTES); and the fit takes each case's median block, as `bench` reports a model's median. Cases of
  a class run from small to large; once a call takes longer than the plan's cap, the larger cases of the class are
  skipped and listed in the notes.
- Fit: per dtype and class, cnncost.speed.fit.fit_rate (roofline with a fixed cost, least relative squared error).
- Device figures: peak_flops[dtype] is the best FLOP/s of the matmul cases; bandwidth_bytes_per_s is the best
  copy of a large fp32 tensor, counting its bytes read plus its bytes written (2 x its size); op_overhead_s is
  the best time of an add of two one-element tensors (dispatch, allocation, and the launch on a GPU).
"""
from __future__ import annotations

import contextlib
import itertools
import os
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cnncost.errors import CnnCostError
from cnncost.speed import device as dev
from cnncost.speed.fit import fit_rate
from cnncost.speed.timing import TooSlow, measure

TORCH_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
COUNTED_AS = {"tf32": "fp32"}  # dtype whose element size the tracer counts bytes in
WORK_COLUMNS = ("macs", "bias_adds", "bytes_read", "bytes_written")  # what device.work reads of a trace row


class Call(nn.Module):
    """A function of the inputs as a module (cat, add, attention), so that it traces and runs like a layer."""

    def __init__(self, fn: Callable, **kwargs) -> None:
        super().__init__()
        self.fn, self.kwargs = fn, kwargs

    def forward(self, *args):
        """The function of the inputs."""
        return self.fn(*args, **self.kwargs)


@dataclass
class Case:
    """One micro-benchmark: a module, the shapes of its inputs, and what layer of which network it is."""

    op_class: str
    label: str
    build: Callable[[], nn.Module]
    shapes: tuple[tuple[int, ...], ...]
    work: dict[str, tuple[int, int]] = field(default_factory=dict)  # dtype -> (FLOPs, bytes), from the trace

    def inputs(self, where: str, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """Inputs of the case on a device ('meta' for tracing)."""
        if where == "meta":
            return tuple(torch.empty(s, device="meta", dtype=dtype) for s in self.shapes)
        return tuple(torch.randn(s, device=where, dtype=dtype) for s in self.shapes)


CASES: dict[str, Callable[[int], list[Case]]] = {}  # op class -> its cases at one batch size, smallest first


def registers(op_class: str) -> Callable:
    """Register the cases of an op class (a function of the batch size); twice, or an unknown class, is an error."""
    def register(fn: Callable[[int], list[Case]]) -> Callable[[int], list[Case]]:
        if op_class not in dev.OP_CLASSES or op_class in CASES:
            raise ValueError(f"op class {op_class!r} is unknown or registered twice")
        CASES[op_class] = fn
        return fn
    return register


def conv(op_class: str, label: str, cin: int, cout: int, k: int, side: int, batch: int, stride: int = 1,
         groups: int = 1, bias: bool = False) -> Case:
    """A k x k convolution on a side x side map (padding k // 2)."""
    return Case(op_class, f"{label}: {k}x{k}/{stride} conv {cin}->{cout} g{groups} @{side}, batch {batch}",
                lambda: nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=bias), ((batch, cin, side, side),))


@registers("conv_dense")
def conv_dense(batch: int) -> list[Case]:
    """Dense convolutions: an SE 1x1 on a 1x1 map, MobileNetV3 and ResNet-50 1x1s, stems, ResNet-50 3x3s."""
    c = "conv_dense"
    return [conv(c, "EfficientNet-B0 SE reduce", 96, 4, 1, 1, batch, bias=True),
            conv(c, "MobileNetV3 expand", 24, 72, 1, 56, batch),
            conv(c, "EfficientNet-B0 stem", 3, 32, 3, 224, batch, stride=2),
            conv(c, "ResNet-50 layer1 1x1", 256, 64, 1, 56, batch),
            conv(c, "ResNet-50 layer4 3x3", 512, 512, 3, 7, batch),
            conv(c, "ResNet-50 layer3 1x1", 1024, 256, 1, 14, batch),
            conv(c, "ResNet-50 stem", 3, 64, 7, 224, batch, stride=2),
            conv(c, "ResNet-50 layer1 3x3", 64, 64, 3, 56, batch)]


@registers("conv_grouped")
def conv_grouped(batch: int) -> list[Case]:
    """Grouped convolutions: ResNeXt-50 32x4d's 3x3s at every stage, a RegNetX-400MF one (groups of 16)."""
    c = "conv_grouped"
    return [conv(c, "ResNeXt-50 tiny map", 64, 64, 3, 7, batch, groups=32),
            conv(c, "RegNetX-400MF stage 2", 64, 64, 3, 28, batch, groups=4),
            conv(c, "ResNeXt-50 layer4", 1024, 1024, 3, 7, batch, groups=32),
            conv(c, "ResNeXt-50 layer3", 512, 512, 3, 14, batch, groups=32),
            conv(c, "ResNeXt-50 layer2", 256, 256, 3, 28, batch, groups=32),
            conv(c, "ResNeXt-50 layer1", 128, 128, 3, 56, batch, groups=32)]


@registers("conv_depthwise")
def conv_depthwise(batch: int) -> list[Case]:
    """Depthwise convolutions: MobileNetV3's and EfficientNet-B0's 3x3 and 5x5, ConvNeXt-T's 7x7."""
    c = "conv_depthwise"
    return [conv(c, "MobileNetV3 last 5x5", 576, 576, 5, 7, batch, groups=576),
            conv(c, "MobileNetV3 first", 16, 16, 3, 112, batch, groups=16),
            conv(c, "ConvNeXt-T stage 4", 768, 768, 7, 7, batch, groups=768, bias=True),
            conv(c, "EfficientNet-B0 stage 4 5x5", 240, 240, 5, 28, batch, groups=240),
            conv(c, "EfficientNet-B0 stage 3", 144, 144, 3, 56, batch, groups=144),
            conv(c, "EfficientNet-B0 stage 2", 96, 96, 3, 112, batch, groups=96),
            conv(c, "ConvNeXt-T stage 1", 96, 96, 7, 56, batch, groups=96, bias=True)]


def linear(label: str, k: int, n: int, rows: tuple[int, ...]) -> Case:
    """A linear layer k -> n on an input of shape rows + (k,)."""
    shown = "x".join(map(str, rows))
    return Case("matmul", f"{label}: linear {k}->{n} on {shown}", lambda: nn.Linear(k, n), (rows + (k,),))


@registers("matmul")
def matmul(batch: int) -> list[Case]:
    """Matrix products: classifiers, ViT-B/16's projections and MLP, ConvNeXt-T's pointwise MLP, a square one."""
    square = Case("matmul", f"square matmul 1024 x 1024 x 1024, batch {batch}", lambda: Call(torch.matmul),
                  ((batch, 1024, 1024), (1024, 1024)))
    return [linear("tiny", 64, 64, (batch,)),
            linear("EfficientNet-B0 classifier", 1280, 1000, (batch,)),
            linear("ResNet-50 classifier", 2048, 1000, (batch,)),
            linear("ViT-B/16 attention out", 768, 768, (batch, 197)),
            linear("ConvNeXt-T stage 1 MLP", 96, 384, (batch, 56, 56)),
            linear("ViT-B/16 MLP in", 768, 3072, (batch, 197)),
            linear("ViT-B/16 MLP out", 3072, 768, (batch, 197)),
            square]


def attention(label: str, batch: int, heads: int, tokens: int, dim: int, windows: int = 1) -> Case:
    """scaled_dot_product_attention of (batch x windows, heads, tokens, dim) queries, keys and values."""
    per = f" x {windows} windows" if windows > 1 else ""
    return Case("attention", f"{label}: attention {heads} heads x {tokens} tokens x {dim}, batch {batch}{per}",
                lambda: Call(F.scaled_dot_product_attention), ((batch * windows, heads, tokens, dim),) * 3)


@registers("attention")
def attention_cases(batch: int) -> list[Case]:
    """Fused attention: Swin-T's 7x7 windows, DeiT-Ti, ViT-S/16 and ViT-B/16 at 224 and 384."""
    return [attention("tiny", batch, 1, 16, 32),
            attention("Swin-T stage 3", batch, 12, 49, 32, windows=16),
            attention("DeiT-Ti", batch, 3, 197, 64),
            attention("Swin-T stage 1", batch, 3, 49, 32, windows=64),
            attention("ViT-S/16", batch, 6, 197, 64),
            attention("ViT-B/16", batch, 12, 197, 64),
            attention("ViT-B/16 at 384", batch, 12, 577, 64)]


def on(op_class: str, label: str, build: Callable[[], nn.Module], *shapes: tuple[int, ...]) -> Case:
    """A case of a module on inputs of the given shapes, labelled with its layer and shapes."""
    shown = " and ".join("x".join(map(str, s)) for s in shapes)
    return Case(op_class, f"{label} on {shown}", build, shapes)


@registers("norm")
def norm(batch: int) -> list[Case]:
    """Normalisation: BatchNorm (eval) in ResNet-50 and MobileNetV3, LayerNorm in ViT-B/16 and ConvNeXt-T."""
    c = "norm"
    return [on(c, "tiny BatchNorm", lambda: nn.BatchNorm2d(16).eval(), (batch, 16, 7, 7)),
            on(c, "ResNet-50 layer4 BatchNorm", lambda: nn.BatchNorm2d(2048).eval(), (batch, 2048, 7, 7)),
            on(c, "ViT-B/16 LayerNorm", lambda: nn.LayerNorm(768), (batch, 197, 768)),
            on(c, "ResNet-50 stem BatchNorm", lambda: nn.BatchNorm2d(64).eval(), (batch, 64, 112, 112)),
            on(c, "ConvNeXt-T stage 1 LayerNorm", lambda: nn.LayerNorm(96), (batch, 56, 56, 96)),
            on(c, "ResNet-50 layer1 BatchNorm", lambda: nn.BatchNorm2d(256).eval(), (batch, 256, 56, 56))]


@registers("elementwise")
def elementwise(batch: int) -> list[Case]:
    """Activations and elementwise arithmetic: residual adds, SE scaling, ReLU, SiLU, Hardswish, GELU."""
    c = "elementwise"
    return [on(c, "tiny add", lambda: Call(torch.add), (batch, 64), (batch, 64)),
            on(c, "MobileNetV3 Hardswish", nn.Hardswish, (batch, 16, 112, 112)),
            on(c, "EfficientNet-B0 SE scale", lambda: Call(torch.mul), (batch, 96, 112, 112), (batch, 96, 1, 1)),
            on(c, "ViT-B/16 MLP GELU", nn.GELU, (batch, 197, 3072)),
            on(c, "EfficientNet-B0 SiLU", nn.SiLU, (batch, 96, 112, 112)),
            on(c, "ResNet-50 stem ReLU", nn.ReLU, (batch, 64, 112, 112)),
            on(c, "ResNet-50 layer1 residual add", lambda: Call(torch.add), (batch, 256, 56, 56),
               (batch, 256, 56, 56))]


@registers("pool")
def pool(batch: int) -> list[Case]:
    """Pooling: global average (classifier heads, SE squeeze), ResNet-50's max pool, DenseNet's transition."""
    c = "pool"
    return [on(c, "tiny global average", lambda: nn.AdaptiveAvgPool2d(1), (batch, 16, 7, 7)),
            on(c, "ResNet-50 global average", lambda: nn.AdaptiveAvgPool2d(1), (batch, 2048, 7, 7)),
            on(c, "DenseNet-121 transition 2x2 average", lambda: nn.AvgPool2d(2), (batch, 128, 56, 56)),
            on(c, "EfficientNet-B0 SE squeeze", lambda: nn.AdaptiveAvgPool2d(1), (batch, 96, 112, 112)),
            on(c, "ResNet-50 3x3/2 max pool", lambda: nn.MaxPool2d(3, 2, 1), (batch, 64, 112, 112))]


@registers("resample")
def resample(batch: int) -> list[Case]:
    """Resampling: FPN's nearest x2, DeepLab's bilinear up-sampling of the logits, a bilinear x2 of features."""
    c = "resample"
    return [on(c, "tiny nearest x2", lambda: nn.Upsample(scale_factor=2), (batch, 16, 7, 7)),
            on(c, "FPN nearest x2", lambda: nn.Upsample(scale_factor=2), (batch, 256, 14, 14)),
            on(c, "DeepLab logits bilinear x8", lambda: nn.Upsample(scale_factor=8, mode="bilinear"),
               (batch, 21, 28, 28)),
            on(c, "FPN nearest x2", lambda: nn.Upsample(scale_factor=2), (batch, 256, 28, 28)),
            on(c, "features bilinear x2", lambda: nn.Upsample(scale_factor=2, mode="bilinear"), (batch, 64, 56, 56))]


@registers("data_movement")
def data_movement(batch: int) -> list[Case]:
    """Data movement: DenseNet's concatenations, zero padding, Swin-T's cyclic shift (roll)."""
    c = "data_movement"
    cat = lambda: Call(lambda *parts: torch.cat(parts, dim=1))  # noqa: E731
    return [on(c, "tiny concatenation", cat, (batch, 16), (batch, 16)),
            on(c, "DenseNet-121 block 2 concatenation", cat, (batch, 256, 28, 28), (batch, 32, 28, 28)),
            on(c, "zero padding by 1", lambda: Call(F.pad, pad=(1, 1, 1, 1)), (batch, 64, 56, 56)),
            on(c, "Swin-T stage 1 shift", lambda: Call(torch.roll, shifts=(-3, -3), dims=(1, 2)), (batch, 56, 56, 96)),
            on(c, "DenseNet-121 block 1 concatenation", cat, (batch, 128, 56, 56), (batch, 128, 56, 56))]


@dataclass(frozen=True)
class Plan:
    """How much to measure: batch sizes, cases per class, time per case, the longest call, the copy's size."""

    batches: tuple[int, ...]
    per_class: int | None  # the first N cases of each class at each batch (None: all)
    budget_s: float        # time for one case's timed blocks
    block_s: float         # least time of one block
    warmup_s: float
    min_blocks: int
    max_blocks: int
    max_call_s: float      # a case whose call would take longer is skipped
    copy_elements: int     # fp32 elements of the bandwidth copy
    overhead_budget_s: float


PLANS = {"quick": Plan((1,), 2, 0.015, 0.00005, 0.002, 5, 400, 0.02, 1 << 20, 0.02),
         "cpu": Plan((1, 8), None, 0.15, 0.00005, 0.01, 5, 400, 0.12, 1 << 25, 0.3),
         "cuda": Plan((1, 16, 128), None, 0.05, 0.002, 0.02, 5, 400, 0.05, 1 << 28, 0.2)}
DEFAULT_DTYPES = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "tf32", "fp16", "bf16")}
TICK_S = 0.01  # progress is counted in hundredths of a second of expected work
# Copies of a case to go round: together at least this many bytes read and written, more than a server CPU's last
# level cache (32 MB per AMD EPYC CCD, up to ~100 MB on Xeons) or a GPU's L2 (50 MB on H100), at most MAX_COPIES.
COLD_BYTES = 256 << 20
MAX_COPIES = 64


def timed(point: dict) -> float | None:
    """The time per call that fits and summaries use: a measured point's median block (None if not measured)."""
    return point["median_s"]


def check_device(device: str) -> str:
    """'cpu', 'cuda' or 'cuda:N' (CUDA present, that GPU there), else one line."""
    from cnncost.bench.runner import check_cuda
    device = device.strip().lower()
    kind, _, index = device.partition(":")
    if device == "cpu" or (kind == "cuda" and (index == "" or index.isdigit())):
        if kind == "cuda":
            check_cuda(device)
        return device
    raise CnnCostError(f"unknown device {device!r}; choose cpu, cuda or cuda:N")


def check_threads(threads: int | None) -> int | None:
    """A thread count of at least 1 and at most 4 per CPU, or None for torch's default."""
    from cnncost.bench.runner import max_threads
    if threads is not None and threads < 1:
        raise CnnCostError(f"--threads must be at least 1, got {threads}")
    if threads is not None and threads > max_threads():
        raise CnnCostError(f"--threads must be at most {max_threads()} (4 x this machine's CPUs), got {threads}")
    return threads


def check_dtypes(dtypes: list[str] | None, device: str) -> tuple[str, ...]:
    """The dtypes to measure (the device's defaults when none is given), each one it runs; else one line."""
    kind = device.partition(":")[0]
    if not dtypes:
        wanted = [d for d in DEFAULT_DTYPES[kind] if kind == "cpu" or runs_on_cuda(d, device)]
        return tuple(wanted)
    for dtype in dtypes:
        if dtype not in TORCH_DTYPES:
            raise CnnCostError(f"unknown dtype {dtype!r}; choose from {', '.join(TORCH_DTYPES)}")
        if kind == "cpu" and dtype == "tf32":
            raise CnnCostError("tf32 needs --device cuda")
        if kind == "cuda" and not runs_on_cuda(dtype, device):
            raise CnnCostError(f"{dtype} does not run on {torch.cuda.get_device_name(device)}")
    return tuple(dict.fromkeys(dtypes))


def runs_on_cuda(dtype: str, device: str) -> bool:
    """Whether a GPU has the dtype: tf32 from compute capability 8.0 (Ampere), bf16 where torch says so."""
    if dtype == "tf32":
        return torch.cuda.get_device_capability(device)[0] >= 8
    if dtype == "bf16":
        return torch.cuda.is_bf16_supported()
    return True


def check(device: str, dtypes, threads: int | None) -> tuple[str, tuple[str, ...], int | None]:
    """The device, dtypes and thread count checked (each bad one is one line) and normalised."""
    device = check_device(device)
    return device, check_dtypes(list(dtypes or ()), device), check_threads(threads)


def plan_cases(plan: Plan) -> list[Case]:
    """Every case the plan measures, class by class."""
    chosen = []
    for make in CASES.values():
        for batch in plan.batches:
            chosen += make(batch)[:plan.per_class]
    return chosen


def trace_case(case: Case, dtype: str) -> tuple[int, int]:
    """(FLOPs, bytes) of a case's trace rows in a dtype, as predict counts them (device.work)."""
    from cnncost.trace import count
    counted = COUNTED_AS.get(dtype, dtype)
    torch_dtype = TORCH_DTYPES[counted]
    with torch.device("meta"):
        module = case.build().to(torch_dtype)
    result = count(module, inputs=case.inputs("meta", torch_dtype), dtype=counted)
    rows = result.table[list(WORK_COLUMNS)].to_dict("records")
    if not rows or result.unsupported:
        raise RuntimeError(f"{case.label} traces to no rows, or to ops without a formula: {result.unsupported}")
    return dev.work(rows)


@contextlib.contextmanager
def numerics(device: str, dtype: str):
    """On a GPU: TF32 on for tf32, off for fp32, cuDNN autotuning on (bench's settings), restored after."""
    from cnncost.bench.runner import Settings
    from cnncost.bench.runner import numerics as bench_numerics
    with bench_numerics(Settings(device=device, dtype=dtype)), torch.inference_mode():
        yield


def time_case(case: Case, device: str, dtype: str, plan: Plan) -> tuple[float, float]:
    """(best, median) seconds of one call of a case on the device in a dtype."""
    torch_dtype = TORCH_DTYPES[dtype]
    moved = case.work[dtype][1]
    copies = [(case.build().to(device=device, dtype=torch_dtype), case.inputs(device, torch_dtype))
              for _ in range(max(1, min(MAX_COPIES, -(-COLD_BYTES // max(moved, 1)))))]
    turn = itertools.cycle(copies)

    def call():
        module, inputs = next(turn)
        return module(*inputs)
    timing = measure(call, device, plan.budget_s, plan.block_s, plan.warmup_s, plan.min_blocks,
                     plan.max_blocks, plan.max_call_s)
    return timing.best_s, timing.median_s


def measure_points(cases: list[Case], device: str, dtype: str, plan: Plan, bar) -> list[dict]:
    """One point per case (its FLOPs, bytes and times, or why it was not measured), class by class, small first;
    after a call over the plan's cap, the larger cases of that class are skipped."""
    points = []
    for op_class in CASES:
        too_slow = ""
        for case in sorted((c for c in cases if c.op_class == op_class), key=lambda c: c.work[dtype]):
            flops, moved = case.work[dtype]
            point = {"dtype": dtype, "op_class": op_class, "case": case.label, "flops": flops, "bytes": moved,
                     "best_s": None, "median_s": None, "predicted_s": None, "error": too_slow}
            bar.working(f"{dtype} {case.label}")
            if not too_slow:
                try:
                    with numerics(device, dtype):
                        point["best_s"], point["median_s"] = time_case(case, device, dtype, plan)
                except TooSlow as e:
                    point["error"] = f"skipped: one call took {e.args[0]:.2g} s, over the {plan.max_call_s} s cap"
                    too_slow = "skipped: a smaller size of its class was over the cap"
                except Exception as e:  # noqa: BLE001  (a dtype a kernel lacks: recorded, the rest goes on)
                    point["error"] = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
            points.append(point)
            bar.done(steps=ticks(plan.budget_s))
    return points


def ticks(seconds: float) -> int:
    """Progress steps of an expected duration."""
    return max(1, round(seconds / TICK_S))


def copy_bandwidth(device: str, plan: Plan) -> float:
    """Bytes per second of a large fp32 copy, counting its read and its write (2 x the tensor's bytes)."""
    source = torch.randn(plan.copy_elements, device=device)
    target = torch.empty_like(source)
    with torch.inference_mode():
        timing = measure(lambda: target.copy_(source), device, plan.overhead_budget_s, plan.block_s,
                         plan.warmup_s, plan.min_blocks, plan.max_blocks)
    return 2 * source.numel() * source.element_size() / timing.best_s


def op_overhead(device: str, plan: Plan) -> float:
    """Seconds of an add of two one-element tensors: the fixed cost of an op."""
    a, b = torch.ones(1, device=device), torch.ones(1, device=device)
    with torch.inference_mode():
        return measure(lambda: torch.add(a, b), device, plan.overhead_budget_s, plan.block_s, plan.warmup_s,
                       plan.min_blocks, plan.max_blocks).best_s


def device_name(device: str) -> str:
    """The device as torch names it (the CPU's model name from /proc/cpuinfo)."""
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else dev.cpu_name()


def memory(device: str) -> tuple[int | None, int | None]:
    """(free, total) bytes of the device's memory where known: torch's on a GPU, /proc/meminfo on the CPU."""
    if device.startswith("cuda"):
        free, total = torch.cuda.mem_get_info(device)
        return int(free), int(total)
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        kib = {k: int(v.split()[0]) * 1024 for k, v in info.items() if k in ("MemAvailable", "MemTotal")}
        return kib.get("MemAvailable"), kib.get("MemTotal")
    except (OSError, ValueError):
        return None, None


def fit_classes(points: list[dict], peak: float, bandwidth: float, notes: list[str]) -> dict[str, dev.Rate]:
    """One Rate per op class from a dtype's measured points (a class with fewer than two is left out, noted);
    each point gets its predicted time."""
    rates = {}
    for op_class in CASES:
        good = [p for p in points if p["op_class"] == op_class and timed(p)]
        if len(good) < 2:
            notes.append(f"{points[0]['dtype'] if points else ''} {op_class}: {len(good)} size(s) measured, "
                         f"no rate fitted")
            continue
        fitted = fit_rate([p["flops"] for p in good], [p["bytes"] for p in good], [timed(p) for p in good],
                          peak, bandwidth)
        rates[op_class] = fitted.rate
        for p in good:
            p["predicted_s"] = fitted.rate.seconds(p["flops"], p["bytes"])
    return rates


def dtype_note(points: list[dict], dtype: str, base: str = "fp32") -> str:
    """How a dtype's time per op compares with fp32's, per class (median over the sizes measured in both)."""
    times = {(p["dtype"], p["case"]): timed(p) for p in points if timed(p)}
    ratios = []
    for op_class in CASES:
        pairs = [times[(dtype, p["case"])] / times[(base, p["case"])] for p in points
                 if p["dtype"] == dtype and p["op_class"] == op_class and (dtype, p["case"]) in times
                 and (base, p["case"]) in times]
        if pairs:
            ratios.append(f"{op_class} {statistics.median(pairs):.2g}x")
    return f"{dtype} time per op / {base}'s (median over sizes; < 1 is faster): {', '.join(ratios)}"


def load() -> tuple[float | None, int]:
    """(the 1-minute load average, or None where unknown; the CPUs)."""
    try:
        return os.getloadavg()[0], os.cpu_count() or 1
    except (AttributeError, OSError):
        return None, os.cpu_count() or 1


def busy() -> str | None:
    """A warning when other work keeps the CPUs busy (load average above half of them), which slows and scatters
    every time measured; None on a quiet machine."""
    average, cpus = load()
    if average is None or average <= cpus / 2:
        return None
    return (f"load average {average:.1f} over {cpus} CPUs: other work will slow and scatter the times; calibrate "
            f"on a quiet machine for a profile to predict with")


def load_note() -> str:
    """The machine's load at the end of the measurements, for the profile's notes."""
    average, cpus = load()
    shown = "unknown" if average is None else f"{average:.1f}"
    return f"load average {shown} over {cpus} CPUs at the end of the measurements"


def calibrate(device: str = "cpu", dtypes: tuple[str, ...] | None = None, threads: int | None = None,
              quick: bool = False, bar=None) -> dev.DeviceProfile:
    """Measure this machine and fit its DeviceProfile (see the module's docstring); inputs are checked first."""
    from cnncost import progress
    device, dtypes, threads = check(device, dtypes, threads)
    plan = PLANS["quick" if quick else device.partition(":")[0]]
    cases = plan_cases(plan)
    total = len(cases) * len(dtypes) * (1 + ticks(plan.budget_s)) + 2 * ticks(plan.overhead_budget_s)
    with contextlib.ExitStack() as stack:
        bar = bar or stack.enter_context(progress.bar("calibrate", total))
        return measure_profile(device, dtypes, threads, plan, cases, bar)


def measure_profile(device: str, dtypes: tuple[str, ...], threads: int | None, plan: Plan, cases: list[Case],
                    bar) -> dev.DeviceProfile:
    """Trace the cases, time them and the device figures, fit the rates: the profile."""
    from cnncost.bench.runner import cpu_threads
    for dtype in dtypes:
        for case in cases:
            bar.working(f"counting {case.label}")
            case.work[dtype] = trace_case(case, dtype)
            bar.done()
    with cpu_threads(threads):
        used = torch.get_num_threads()
        bar.working("fixed cost of an op")
        overhead = op_overhead(device, plan)
        bar.done(steps=ticks(plan.overhead_budget_s))
        bar.working("copy bandwidth")
        bandwidth = copy_bandwidth(device, plan)
        bar.done(steps=ticks(plan.overhead_budget_s))
        points = [p for dtype in dtypes for p in measure_points(cases, device, dtype, plan, bar)]
    notes = [f"FLOPs = 2 x MACs + bias adds and bytes = read + written, of each case's trace rows (device.work); "
             f"bandwidth: copy of {plan.copy_elements * 4 / 1e6:.0f} MB fp32, read + write; op overhead: add of two "
             f"one-element tensors; times: median block of repeated calls over copies that outgrow the caches; "
             f"peaks: best block", load_note()]
    if plan is PLANS["quick"]:
        notes.append("quick: two tiny sizes per class, a smoke test; not a profile to predict with")
    peaks, rates = {}, {}
    for dtype in dtypes:
        mine = [p for p in points if p["dtype"] == dtype]
        products = [p["flops"] / p["best_s"] for p in mine if p["op_class"] == "matmul" and p["best_s"]]
        peaks[dtype] = max(products, default=0.0)
        rates[dtype] = fit_classes(mine, peaks[dtype] or 1.0, bandwidth, notes)
        if dtype != "fp32" and "fp32" in dtypes:
            notes.append(dtype_note(points, dtype))
    notes += [f"{p['dtype']} {p['case']}: {p['error']}" for p in points if p["error"]]
    name = device_name(device)
    kind = device.partition(":")[0]
    free, total = memory(device)
    return dev.DeviceProfile(
        key=dev.profile_key(kind, name, used), name=name, device_type=kind, peak_flops=peaks,
        bandwidth_bytes_per_s=bandwidth, rates=rates, measured=True, threads=used, torch=torch.__version__,
        machine=dev.this_machine(), memory_bytes=free, memory_total_bytes=total,
        created_utc=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), notes=notes, op_overhead_s=overhead,
        points=points)


def summary(profile: dev.DeviceProfile) -> list[dict]:
    """One row per dtype and op class: achieved TFLOP/s and GB/s, fixed cost, sizes, fit error, and which rate
    the sizes left unidentified."""
    rows = []
    for dtype, classes in profile.rates.items():
        for op_class, rate in classes.items():
            mine = [p for p in profile.points if p["dtype"] == dtype and p["op_class"] == op_class and timed(p)]
            errors = [abs(p["predicted_s"] / timed(p) - 1) for p in mine]
            rows.append({"dtype": dtype, "op_class": op_class, "sizes": len(mine),
                         "tflop_per_s": round(rate.flops_per_s / 1e12, 4),
                         "gb_per_s": round(rate.bytes_per_s / 1e9, 2), "fixed_us": round(rate.fixed_s * 1e6, 2),
                         "median_error_pct": round(100 * statistics.median(errors), 1),
                         "max_error_pct": round(100 * max(errors), 1),
                         "note": rate.source.partition("; ")[2]})
    return rows


def headline(profile: dev.DeviceProfile) -> list[dict]:
    """The device's figures as quantity / value rows."""
    rows = [{"quantity": "key", "value": profile.key}, {"quantity": "name", "value": profile.name},
            {"quantity": "threads", "value": str(profile.threads)}, {"quantity": "torch", "value": profile.torch}]
    rows += [{"quantity": f"peak matmul TFLOP/s ({dtype})", "value": f"{peak / 1e12:.4g}"}
             for dtype, peak in profile.peak_flops.items()]
    rows += [{"quantity": "copy bandwidth GB/s (read + write)", "value": f"{profile.bandwidth_bytes_per_s / 1e9:.4g}"},
             {"quantity": "op overhead us", "value": f"{(profile.op_overhead_s or 0) * 1e6:.3g}"}]
    return rows
