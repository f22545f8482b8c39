"""Predicted time per layer from its counts: a roofline per row with the device's efficiency for the row's op class.

A row's work is ``flops = 2 x macs + bias_adds`` and ``bytes = bytes_read + bytes_written`` (the tracer's counts
for the dtype). Its time is the device profile's ``fixed_s + max(flops / flops_per_s, bytes / bytes_per_s)`` for
the row's op class (cnncost.speed.device.Rate). The model's latency is the sum of its rows, and never less than
the host's time to issue its ops on a GPU (``host_seconds`` per op, which the device overlaps). No torch import:
rows and a profile in, a table out, so the arithmetic can be checked by hand.

Rules change a row's counts before the roofline, each a fact about the kernels that run:
- views (reshape, permute, ...) move nothing; the parts of a fused attention call (its scaling and softmax rows)
  run inside the attention kernel, whose own row carries its reads and writes;
- on a GPU's tensor cores a convolution's channels per group are padded to the alignment its kernels need
  (constants.TENSOR_CORE_ALIGN);
- in NCHW layout on a GPU, a tensor-core convolution with a window larger than 1x1 has its input and output
  transposed to NHWC and back by cuDNN: each is read and written once more (a 1x1 convolution is a GEMM in NCHW);
- fp16 / bf16 on a GPU mean autocast (AMP), as timm's benchmark and training run them: the ops autocast keeps in
  fp32 (layer_norm, group_norm, softmax) move constants.AUTOCAST_FP32_TRAFFIC times their fp16 bytes (fp32
  copies, the casts around them), and in a model with such norms the residual stream they feed is fp32, so its
  elementwise rows move constants.FP32_STREAM_TRAFFIC times theirs;
- ``compiled``: torch.compile fuses each run of memory-bound rows (norm, activation, elementwise) into one kernel
  that reads the run's inputs once and writes its last output once; autocast's casts fuse away, but its fp32
  tensors still move twice the bytes of fp16 ones (and the fp32 stream FP32_STREAM_TRAFFIC times).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cnncost.errors import CnnCostError
from cnncost.speed import constants
from cnncost.speed.device import DeviceProfile

# Classes torch.compile folds into one pointwise or reduction kernel per run of neighbouring rows.
FUSIBLE = ("norm", "elementwise")
RESAMPLE_KINDS = ("upsample", "grid_sample", "roi_align", "interpolate")
POOL_KINDS = ("maxpool", "avgpool", "adaptive_avgpool", "adaptive_maxpool", "lppool", "fractional")
# aten ops that return a view of their input: no kernel, no bytes moved.
VIEW_OPS = frozenset(f"aten.{op}" for op in (
    "view", "_unsafe_view", "reshape", "permute", "transpose", "t", "expand", "expand_as", "unsqueeze", "squeeze",
    "slice", "select", "split", "split_with_sizes", "unbind", "chunk", "alias", "as_strided", "detach", "unfold",
    "view_as", "flatten", "unflatten", "narrow", "movedim", "swapaxes", "diagonal", "lift_fresh"))
ATTENTION_OPS = ("scaled_dot_product_attention", "_flash_attention", "_efficient_attention")
# Kinds autocast runs in fp32 (torch's autocast op reference, "CUDA Ops that can autocast to float32"), and the norms
# among them whose fp32 output makes a model's residual stream fp32.
AUTOCAST_FP32_KINDS = ("layer_norm", "group_norm", "softmax", "log_softmax")
FP32_NORMS = ("layer_norm", "group_norm")


def dims(shape: str) -> list[int]:
    """'1x64x56x56' -> [1, 64, 56, 56] ([] for an empty or non-numeric shape)."""
    try:
        return [int(d) for d in str(shape).split("x")] if shape else []
    except ValueError:
        return []


def op_class(kind: str, category: str, op: str = "", groups: int = 1, in_shape: str = "") -> str:
    """The op class a row's time is predicted by: convolutions by groups (1: dense; one per input channel:
    depthwise; else grouped), linear / matmul, attention (its parts too), norm, elementwise (activations too),
    pool, resample (upsample, grid_sample), data_movement (everything else)."""
    op = op or ""
    if any(name in op for name in ATTENTION_OPS) or kind == "attention":
        return "attention"
    if category == "conv":
        if groups <= 1:
            return "conv_dense"
        shape = dims(in_shape)
        return "conv_depthwise" if len(shape) > 1 and groups == shape[1] else "conv_grouped"
    if category == "linear":
        return "matmul"
    if category == "norm":
        return "norm"
    if category in ("activation", "elementwise"):
        return "elementwise"
    if kind.startswith(RESAMPLE_KINDS):
        return "resample"
    if category == "pool" or kind.startswith(POOL_KINDS):
        return "pool"
    return "data_movement"


def is_view(op: str) -> bool:
    """Whether every aten op of a row (space-separated) only makes a view."""
    ops = str(op or "").split()
    return bool(ops) and all(o.split(".default")[0] in VIEW_OPS for o in ops)


def attention_part(op: str, kind: str) -> bool:
    """A row that a fused attention call reports beside its matmuls (scaling, softmax): run inside its kernel."""
    return kind != "attention" and any(name in str(op or "") for name in ATTENTION_OPS)


@dataclass
class Prediction:
    """Predicted time of one forward (or training step): per row and in total."""

    model: str
    device: str
    dtype: str
    batch: int
    table: pd.DataFrame          # the rows with op_class, flops, bytes, predicted_ms, bound
    latency_ms: float            # one step of `batch` images
    img_per_s: float
    host_bound: bool = False     # the host's time to issue the ops exceeds the device's (GPU, small batches)
    notes: list[str] = field(default_factory=list)

    def by_class(self) -> pd.DataFrame:
        """Predicted milliseconds, FLOPs and bytes per op class, largest time first."""
        grouped = self.table.groupby("op_class")[["predicted_ms", "flops", "bytes"]].sum()
        grouped["share"] = grouped.predicted_ms / max(grouped.predicted_ms.sum(), 1e-30)
        return grouped.sort_values("predicted_ms", ascending=False).reset_index()

    def summary(self) -> dict:
        """The totals as one flat record (units in the names)."""
        return {"model": self.model, "device": self.device, "dtype": self.dtype, "batch": self.batch,
                "latency_ms": self.latency_ms, "img_per_s": self.img_per_s, "host_bound": self.host_bound,
                "flops": int(self.table.flops.sum()), "bytes": int(self.table.bytes.sum())}


def column(table: pd.DataFrame, name: str, default) -> pd.Series:
    """A column of the table, or a constant one when the table has none (analytic tables have no 'op')."""
    return table[name] if name in table else pd.Series([default] * len(table), index=table.index)


def classify(table: pd.DataFrame) -> list[str]:
    """The op class of every row."""
    return [op_class(k, c, o, int(g or 1), s) for k, c, o, g, s in
            zip(table.kind, table.category, column(table, "op", ""), column(table, "groups", 1), table.in_shape)]


def element_bytes(table: pd.DataFrame) -> np.ndarray:
    """Bytes per element of each row's output (bytes_written / output elements; 0 where unknown)."""
    elements = np.array([math.prod(dims(s)) if dims(s) else 0 for s in table.out_shape], dtype=float)
    written = table.bytes_written.to_numpy(dtype=float)
    return np.divide(written, elements, out=np.zeros_like(written), where=elements > 0)


def tensor_core_padding(table: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """The factor a convolution's FLOPs grow by when its input and output channels per group are rounded up to
    the tensor cores' alignment (3 -> 8 channels: x 2.67 on a stem conv); 1 for every other row."""
    align = constants.TENSOR_CORE_ALIGN
    factor = np.ones(len(table))
    for i, (cls, g, s_in, s_out) in enumerate(zip(classes, column(table, "groups", 1), table.in_shape,
                                                  table.out_shape)):
        if cls not in ("conv_dense", "conv_grouped"):
            continue
        d_in, d_out, g = dims(s_in), dims(s_out), max(int(g or 1), 1)
        if len(d_in) < 2 or len(d_out) < 2:
            continue
        cin, cout = d_in[1] / g, d_out[1] / g
        if cin > 0 and cout > 0:
            factor[i] = (math.ceil(cin / align) * align / cin) * (math.ceil(cout / align) * align / cout)
    return factor


def window(kernel) -> int:
    """The number of taps of a convolution's window ('3x3' -> 9, '1x7' -> 7; 1 when unknown)."""
    return math.prod(dims(kernel)) if dims(kernel) else 1


def nchw_transpose_bytes(table: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """The bytes cuDNN's layout transposes add to a tensor-core convolution with a window larger than 1x1 in
    NCHW: its input and output activations each read and written once more."""
    extra = np.zeros(len(table))
    size = element_bytes(table)
    kernels = column(table, "kernel", "")
    for i, (cls, s_in, s_out, k) in enumerate(zip(classes, table.in_shape, table.out_shape, kernels)):
        if cls in ("conv_dense", "conv_grouped") and window(k) > 1:
            extra[i] = 2 * size[i] * (math.prod(dims(s_in)) + math.prod(dims(s_out)))
    return extra


def fuse(classes: list[str], flops: np.ndarray, moved: np.ndarray, read: np.ndarray,
         written: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """torch.compile's fusion: each run of neighbouring memory-bound rows (norm, elementwise) becomes one kernel.
    Its bytes are the first row's reads, plus what each later row reads beyond its predecessor's output (a
    residual, a scale), plus the last row's writes; the run's time is charged to its first row (the others: 0 and
    no fixed cost, marked by a negative byte count that `work` turns into 'fused')."""
    flops, moved = flops.copy(), moved.copy()
    i, n = 0, len(classes)
    while i < n:
        if classes[i] not in FUSIBLE or moved[i] == 0:
            i += 1
            continue
        j = i + 1
        total_flops, run_bytes = flops[i], read[i]
        while j < n and classes[j] in FUSIBLE and moved[j] != 0:
            run_bytes += max(read[j] - written[j - 1], 0.0)
            total_flops += flops[j]
            flops[j], moved[j] = 0.0, -1.0
            j += 1
        flops[i], moved[i] = total_flops, run_bytes + written[j - 1]
        i = j
    return flops, moved


@dataclass
class Work:
    """What each row asks of the device once the rules above are applied: its op class, FLOPs and bytes, the
    bytes the GPU rules would add or scale (kept apart so benchmarks/fit_gpu_constants.py can vary the
    constants), and its state ('run'; 'free': a view or an attention part; 'fused': folded into an earlier row
    by torch.compile)."""

    classes: list[str]
    flops: np.ndarray
    moved: np.ndarray
    transposed: np.ndarray   # NCHW transpose bytes (GPU, NCHW, eager)
    autocast_fp32: np.ndarray  # rows autocast runs in fp32 (GPU, fp16/bf16, eager)
    fp32_stream: np.ndarray  # elementwise rows of a model with fp32 norms (GPU, fp16/bf16, eager)
    state: np.ndarray

    def traffic(self, nchw: float = 1.0, autocast: float | None = None, stream: float | None = None) -> np.ndarray:
        """Bytes per row with the GPU rules' constants applied (defaults: cnncost.speed.constants)."""
        autocast = constants.AUTOCAST_FP32_TRAFFIC if autocast is None else autocast
        stream = constants.FP32_STREAM_TRAFFIC if stream is None else stream
        scale = np.where(self.autocast_fp32, autocast, 1.0) * np.where(self.fp32_stream, stream, 1.0)
        return (self.moved + nchw * self.transposed) * scale


def work(table: pd.DataFrame, device_type: str, dtype: str, channels_last: bool = False,
         compiled: bool = False) -> Work:
    """Each row's op class, FLOPs (2 x MACs + bias adds) and bytes (read + written) after the rules."""
    n = len(table)
    classes = classify(table)
    flops = 2 * table.macs.to_numpy(dtype=float) + column(table, "bias_adds", 0).to_numpy(dtype=float)
    moved = table.bytes_read.to_numpy(dtype=float) + table.bytes_written.to_numpy(dtype=float)
    free = np.array([is_view(o) or attention_part(o, k) for o, k in zip(column(table, "op", ""), table.kind)],
                    dtype=bool).reshape(n)
    gpu, amp = device_type == "cuda", device_type == "cuda" and dtype in ("fp16", "bf16")
    if gpu and dtype != "fp32":
        flops = flops * tensor_core_padding(table, classes)
    transposed = nchw_transpose_bytes(table, classes) if gpu and not channels_last and not compiled else np.zeros(n)
    fp32_kinds = table.kind.isin(AUTOCAST_FP32_KINDS).to_numpy() & ~free
    autocast_fp32 = fp32_kinds & amp
    elementwise = np.array([c == "elementwise" for c in classes], dtype=bool).reshape(n)
    fp32_stream = elementwise & ~fp32_kinds & ~free & amp & bool(table.kind.isin(FP32_NORMS).any())
    flops[free], moved[free], transposed[free] = 0.0, 0.0, 0.0
    state = np.where(free, "free", "run").astype(object)
    if compiled:
        # compiled autocast: no casts or fp32 copies left, but fp32 tensors stay twice the size of fp16 ones
        scale = np.where(autocast_fp32, 2.0, 1.0) * np.where(fp32_stream, constants.FP32_STREAM_TRAFFIC, 1.0)
        read = table.bytes_read.to_numpy(dtype=float) * scale
        written = table.bytes_written.to_numpy(dtype=float) * scale
        flops, moved = fuse(classes, flops, np.where(free, 0.0, read + written), read, written)
        state[moved < 0] = "fused"
        moved[moved < 0] = 0.0
        autocast_fp32, fp32_stream = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)  # in `moved` already
    return Work(classes, flops, moved, transposed, autocast_fp32, fp32_stream, state)


def roofline(flops: np.ndarray, moved: np.ndarray, flops_per_s: np.ndarray, bytes_per_s: np.ndarray,
             fixed_s: np.ndarray) -> np.ndarray:
    """Seconds per row: fixed_s + max(flops / flops_per_s, bytes / bytes_per_s), element-wise."""
    return fixed_s + np.maximum(flops / flops_per_s, moved / bytes_per_s)


def class_rates(profile: DeviceProfile, dtype: str, classes: list[str]) -> tuple[np.ndarray, np.ndarray,
                                                                                   np.ndarray]:
    """Each row's FLOP rate, byte rate and fixed cost from the profile's rate for its class."""
    rates = {c: profile.rate(dtype, c) for c in set(classes)}
    return (np.array([rates[c].flops_per_s for c in classes], dtype=float),
            np.array([rates[c].bytes_per_s for c in classes], dtype=float),
            np.array([rates[c].fixed_s for c in classes], dtype=float))


def rows(table: pd.DataFrame, profile: DeviceProfile, dtype: str, channels_last: bool = False,
         compiled: bool = False) -> pd.DataFrame:
    """The table with op_class, flops, bytes, predicted_ms and bound added: one roofline per row."""
    w = work(table, profile.device_type, dtype, channels_last, compiled)
    moved = w.traffic()
    flops_per_s, bytes_per_s, fixed_s = class_rates(profile, dtype, w.classes)
    running = w.state == "run"
    seconds = np.where(running, roofline(w.flops, moved, flops_per_s, bytes_per_s, fixed_s), 0.0)
    compute = w.flops / flops_per_s >= moved / bytes_per_s
    out = table.copy()
    out["op_class"], out["flops"], out["bytes"] = w.classes, w.flops.round().astype("int64"), moved.round(
    ).astype("int64")
    out["predicted_ms"] = seconds * 1e3
    out["bound"] = np.where(running, np.where(compute, "compute", "memory"), w.state)
    return out


def host_seconds(profile: DeviceProfile) -> float:
    """The host's time to issue one op on a GPU, which overlaps the device's work: the stated launch cost of a
    data-sheet profile, or the tiny-op time calibrate measured; 0 on a CPU, where it is in each op's fixed cost."""
    if profile.device_type == "cpu":
        return 0.0
    return max(profile.launch_s, profile.op_overhead_s or 0.0)


def predict_table(table: pd.DataFrame, profile: DeviceProfile, dtype: str = "fp32", batch: int = 1,
                  model: str = "", channels_last: bool = False, compiled: bool = False) -> Prediction:
    """A Prediction from a trace table (a Result's .table) and a device profile."""
    if batch < 1:
        raise CnnCostError(f"batch must be a positive integer, got {batch}")
    profile.rate(dtype, "elementwise")  # a dtype the device lacks: one line before any work
    costed = rows(table, profile, dtype, channels_last, compiled)
    device_ms = float(costed.predicted_ms.sum())
    issued = int((~costed.bound.isin(("free", "fused"))).sum())
    host_ms = issued * host_seconds(profile) * 1e3
    latency = max(device_ms, host_ms)
    notes = []
    if host_ms > device_ms:
        notes.append(f"host-bound: issuing {issued} ops takes {host_ms:.3g} ms, more than the device's "
                     f"{device_ms:.3g} ms (a larger batch, CUDA graphs or torch.compile would help)")
    img_per_s = batch / (latency / 1e3) if latency > 0 else float("inf")
    return Prediction(model, profile.key, dtype, batch, costed, latency, img_per_s, host_ms > device_ms, notes)
