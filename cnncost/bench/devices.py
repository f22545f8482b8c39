"""Peak dense throughput and memory bandwidth of common accelerators, with sources, matched by device name.

TFLOP/s are *dense* tensor-core peaks (NVIDIA's data sheets quote "with sparsity" figures, twice these; we
halve them). fp32 is the plain FP32 (non tensor-core) peak, what cuDNN gets with TF32 switched off. fp16 and
bf16 are with FP32 accumulation, as PyTorch uses (GeForce cards run that at half their FP16-accumulate rate).
Boost clocks: a card that throttles for power or heat reaches less, so an MFU near 1 is not expected.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from cnncost.errors import CnnCostError

BENCH_DTYPES = ("fp32", "tf32", "fp16", "bf16")


@dataclass(frozen=True)
class Device:
    """One accelerator: dense peaks in TFLOP/s per dtype (None: no such mode), bandwidth in GB/s, a source."""

    key: str
    name: str
    pattern: str
    fp32: float
    tf32: float | None
    fp16: float
    bf16: float | None
    bandwidth_gb_s: float
    source: str

    def peak_tflops(self, dtype: str) -> float | None:
        """Dense peak TFLOP/s for a benchmark dtype (fp32, tf32, fp16, bf16)."""
        if dtype not in BENCH_DTYPES:
            raise CnnCostError(f"unknown dtype {dtype!r}; choose one of {', '.join(BENCH_DTYPES)}")
        return getattr(self, dtype)


NV = "https://www.nvidia.com/en-us/data-center"
# Most specific patterns first: the first whose regex is found in the device name wins.
DEVICES = (
    Device("h100-nvl", "NVIDIA H100 NVL", r"\bH100\b.*NVL", 60, 417.5, 835.5, 835.5, 3900,
           f"{NV}/h100/ (H100 NVL column; sparse 835 TF32, 1671 BF16/FP16 halved)"),
    Device("h100-pcie", "NVIDIA H100 PCIe", r"\bH100\b.*PCI", 51, 378, 756.5, 756.5, 2000,
           f"{NV}/h100/ (H100 PCIe column; sparse 756 TF32, 1513 BF16/FP16 halved)"),
    Device("h100-sxm", "NVIDIA H100 SXM", r"\bH100\b", 67, 494.5, 989.5, 989.5, 3350,
           f"{NV}/h100/ (H100 SXM column; sparse 989 TF32, 1979 BF16/FP16 halved)"),
    Device("h200-nvl", "NVIDIA H200 NVL", r"\bH200\b.*NVL", 60, 417.5, 835.5, 835.5, 4800,
           f"{NV}/h200/ (H200 NVL column; sparse 835 TF32, 1671 BF16/FP16 halved)"),
    Device("h200", "NVIDIA H200 SXM", r"\bH200\b", 67, 494.5, 989.5, 989.5, 4800,
           f"{NV}/h200/ (H200 SXM column; sparse 989 TF32, 1979 BF16/FP16 halved)"),
    Device("a100-80gb-sxm", "NVIDIA A100 80GB SXM", r"\bA100\b.*SXM.*80", 19.5, 156, 312, 312, 2039,
           f"{NV}/a100/ (A100 80GB SXM column: 19.5 FP32, 156 TF32, 312 BF16/FP16 dense)"),
    Device("a100-80gb-pcie", "NVIDIA A100 80GB PCIe", r"\bA100\b.*80GB.*PCI", 19.5, 156, 312, 312, 1935,
           f"{NV}/a100/ (A100 80GB PCIe column)"),
    Device("a100-40gb", "NVIDIA A100 40GB", r"\bA100\b", 19.5, 156, 312, 312, 1555,
           f"{NV}/a100/ (A100 40GB column, SXM and PCIe)"),
    Device("l40s", "NVIDIA L40S", r"\bL40S\b", 91.6, 183, 366, 366, 864,
           f"{NV}/l40s/ (sparse 366 TF32, 733 BF16/FP16 halved)"),
    Device("l4", "NVIDIA L4", r"\bL4\b", 30.3, 60, 121, 121, 300,
           f"{NV}/l4/ (sparse 120 TF32, 242 BF16/FP16 halved)"),
    Device("a10", "NVIDIA A10", r"\bA10\b", 31.2, 62.5, 125, 125, 600,
           f"{NV}/products/a10-gpu/ (62.5 TF32, 125 BF16/FP16 dense)"),
    Device("rtx4090", "NVIDIA GeForce RTX 4090", r"\bRTX 4090\b", 82.6, 82.6, 165.2, 165.2, 1008,
           "NVIDIA Ada Lovelace GPU architecture whitepaper, appendix table (FP16/BF16 tensor with FP32 accumulate)"),
    Device("rtx3090", "NVIDIA GeForce RTX 3090", r"\bRTX 3090\b", 35.6, 35.6, 71, 71, 936,
           "NVIDIA Ampere GA102 GPU architecture whitepaper, appendix table (FP16/BF16 tensor with FP32 accumulate)"),
    Device("v100-pcie", "NVIDIA V100 PCIe", r"\bV100\b.*PCI", 14, None, 112, None, 900,
           f"{NV}/v100/ (PCIe column: 14 FP32, 112 tensor; no TF32 or BF16)"),
    Device("v100", "NVIDIA V100 SXM2", r"\bV100\b", 15.7, None, 125, None, 900,
           f"{NV}/v100/ (SXM2 column: 15.7 FP32, 125 tensor; no TF32 or BF16)"),
    Device("t4", "NVIDIA T4", r"\bT4\b", 8.1, None, 65, None, 320,
           f"{NV}/tesla-t4/ (8.1 FP32, 65 FP16 mixed precision; no TF32 or BF16)"),
    Device("mi300x", "AMD Instinct MI300X", r"\bMI300X\b", 163.4, 653.7, 1307.4, 1307.4, 5300,
           "https://www.amd.com/en/products/accelerators/instinct/mi300/mi300x.html (dense matrix peaks)"),
)


# Memory per device in GiB (the data sheets' "80GB" of HBM is 80 GiB; torch reports a little less as usable,
# e.g. 79.2 GiB on an H100 80GB). V100 and T4 came in 16 GB (V100 also 32 GB): the smaller is listed.
MEMORY_GIB = {"h100-nvl": 94, "h100-pcie": 80, "h100-sxm": 80, "h200-nvl": 141, "h200": 141,
              "a100-80gb-sxm": 80, "a100-80gb-pcie": 80, "a100-40gb": 40, "l40s": 48, "l4": 24, "a10": 24,
              "rtx4090": 24, "rtx3090": 24, "v100-pcie": 16, "v100": 16, "t4": 16, "mi300x": 192}


def memory_bytes(key: str) -> int:
    """A device's memory in bytes, by key or name (h100-sxm -> 80 GiB)."""
    return MEMORY_GIB[by_key(key).key] * 2**30


def match(device_name: str) -> Device | None:
    """The table entry for a device name as torch reports it ('NVIDIA H100 80GB HBM3' -> h100-sxm), or None."""
    for device in DEVICES:
        if re.search(device.pattern, device_name, re.IGNORECASE):
            return device
    return None


def by_key(key: str) -> Device:
    """The table entry with a short key (h100-sxm, a100-80gb-sxm, l4, ...), or a one-line error naming close keys."""
    keys = {d.key: d for d in DEVICES}
    found = keys.get(key.strip().lower()) or match(key)
    if found:
        return found
    close = difflib.get_close_matches(key.lower(), keys, n=3, cutoff=0.4)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise CnnCostError(f"unknown device {key!r}; {hint}known: {', '.join(keys)}")


def records() -> list[dict]:
    """The table as rows, for printing."""
    return [{"key": d.key, "name": d.name, **{f"{t}_tflop_per_s": d.peak_tflops(t) for t in BENCH_DTYPES},
             "bandwidth_gb_s": d.bandwidth_gb_s, "source": d.source} for d in DEVICES]
