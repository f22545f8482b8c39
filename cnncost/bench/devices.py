"""Peak dense throughput and memory bandwidth of common accelerators, with sources, matched by device name.

TFLOP/s are *dense* tensor-core peaks (NVIDIA's data sheets quote "with sparsity" figures, twice these; we
halve them). fp32 is the plain FP32 (non tensor-core) peak, what cuDNN gets with TF32 switched off. fp16 and
bf16 are with FP32 accumulation, as PyTorch uses (GeForce cards run that at half their FP16-accumulate rate).
Boost clocks: a card that throttles for power or heat reaches less, so an MFU near 1 is not expected.

Memory is what a program can use, not the marketing figure: the total torch reports (its out-of-memory message's
"total capacity", cudaMemGetInfo's total), with where each figure comes from in USABLE_MEMORY. The CUDA context
takes a further ~0.3-0.6 GiB of it once a process starts.
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
    Device("b200", "NVIDIA B200", r"\bB200\b", 75, 1100, 2250, 2250, 7700,
           f"{NV}/hgx/ (HGX B200, per GPU: 75 FP32; sparse 2.2 PF TF32, 4.5 PF FP16/BF16 halved; 7.7 TB/s)"),
    Device("l40s", "NVIDIA L40S", r"\bL40S\b", 91.6, 183, 366, 366, 864,
           f"{NV}/l40s/ (sparse 366 TF32, 733 BF16/FP16 halved)"),
    Device("l4", "NVIDIA L4", r"\bL4\b", 30.3, 60, 121, 121, 300,
           f"{NV}/l4/ (sparse 120 TF32, 242 BF16/FP16 halved)"),
    Device("a10", "NVIDIA A10", r"\bA10\b", 31.2, 62.5, 125, 125, 600,
           f"{NV}/products/a10-gpu/ (62.5 TF32, 125 BF16/FP16 dense)"),
    Device("rtx-pro-6000-maxq", "NVIDIA RTX PRO 6000 Blackwell Max-Q", r"\bRTX PRO 6000\b.*Max-?Q", 110, 219.4,
           438.9, 438.9, 1792,
           "https://www.nvidia.com/en-us/products/workstations/professional-desktop-gpus/rtx-pro-6000-max-q/ "
           "(110 FP32; 3,511 AI TOPS = sparse FP4, / 8 = dense FP16/BF16 with FP32 accumulate, full rate on RTX "
           "PRO cards; TF32 half that; 1,792 GB/s)"),
    Device("rtx-pro-6000", "NVIDIA RTX PRO 6000 Blackwell (Workstation / Server)", r"\bRTX PRO 6000\b", 125, 250,
           500, 500, 1792,
           "https://www.nvidia.com/en-us/products/workstations/professional-desktop-gpus/rtx-pro-6000/ (125 FP32; "
           "4,000 AI TOPS = sparse FP4, / 8 = dense FP16/BF16 with FP32 accumulate; TF32 half that; 1,792 GB/s; "
           "the 600 W Server Edition lists the same peaks)"),
    Device("rtx5090", "NVIDIA GeForce RTX 5090", r"\bRTX 5090\b", 104.8, 104.8, 209.5, 209.5, 1792,
           "NVIDIA RTX Blackwell GPU architecture whitepaper, appendix table (FP16/BF16 tensor with FP32 "
           "accumulate 209.5 dense: GeForce runs it at half the FP16-accumulate 419; 1,792 GB/s)"),
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


ISSUES = "https://github.com"
# Usable memory in GiB: the total torch reports on each card, and where the figure comes from. "torch" figures are
# quoted from an out-of-memory message on that card ("GPU 0 has a total capacity of ..."); "estimate" figures
# scale the card's nominal size by the ratio torch reports on a card with the same kind of memory.
USABLE_MEMORY = {
    "h100-sxm": (79.11, f"torch: {ISSUES}/vllm-project/vllm/issues/27508 (H100 80GB: 79.11 GiB)"),
    "h100-pcie": (79.11, "estimate: as the H100 SXM (80 GiB of HBM, 79.11 GiB reported)"),
    "h100-nvl": (92.96, "estimate: 94 GiB x 79.11/80 (the H100 80GB's reported share)"),
    "h200": (139.44, "estimate: 141 GiB x 79.11/80 (the H100 80GB's reported share)"),
    "h200-nvl": (139.44, "estimate: 141 GiB x 79.11/80 (the H100 80GB's reported share)"),
    "b200": (178.0, "estimate: 180 GiB x 79.11/80 (the H100 80GB's reported share)"),
    "a100-80gb-sxm": (79.25, f"torch: {ISSUES}/wbfwonderful/Vad-R1/issues/11 (A100 80GB: 79.25 GiB)"),
    "a100-80gb-pcie": (79.25, "estimate: as the A100 80GB SXM (79.25 GiB reported)"),
    "a100-40gb": (39.50, f"torch: {ISSUES}/TianheWu/CoSeR/issues/10 (A100 40GB: 39.50 GiB)"),
    "l40s": (44.53, f"torch: {ISSUES}/Wan-Video/Wan2.1/issues/205 (L40S 48GB: 44.53 GiB)"),
    "l4": (22.03, "estimate: 24 GB x 21.99/24 (the A10's reported share, same GDDR6 size), rounded up"),
    "a10": (21.99, f"torch: {ISSUES}/zai-org/CogVLM/issues/236 (A10 24GB: 21.99 GiB)"),
    "rtx-pro-6000-maxq": (95.1, "estimate: nvidia-smi's 97,887 MiB (95.59 GiB; "
                                f"{ISSUES}/MarcoPizeta/flash-next-rtxpro6000-bench HARDWARE.md) less the "
                                "0.48 GiB torch reports below nvidia-smi on an RTX 5090"),
    "rtx-pro-6000": (95.1, "estimate: nvidia-smi's 97,887 MiB (95.59 GiB; "
                           f"{ISSUES}/MarcoPizeta/flash-next-rtxpro6000-bench HARDWARE.md) less the 0.48 GiB torch "
                           "reports below nvidia-smi on an RTX 5090"),
    "rtx5090": (31.36, f"torch: {ISSUES}/TrajectoryCrafter/TrajectoryCrafter/issues/20 (RTX 5090: 31.36 GiB)"),
    "rtx4090": (23.64, f"torch: {ISSUES}/ali-vilab/VGen/issues/104 (RTX 4090: 23.64 GiB)"),
    "rtx3090": (23.64, "estimate: as the RTX 4090 (24 GB of GDDR6X, 23.64 GiB reported)"),
    "v100-pcie": (15.75, "estimate: 16 GiB less the 0.25 GiB a T4 16GB loses (14.75 of 15 GiB nvidia-smi shows)"),
    "v100": (15.75, "estimate: 16 GiB less the 0.25 GiB a T4 16GB loses (14.75 of 15 GiB nvidia-smi shows)"),
    "t4": (14.75, f"torch: {ISSUES}/hpcaitech/Open-Sora/issues/697 (T4: 14.75 GiB)"),
    "mi300x": (191.5, "estimate: 192 GiB of HBM3 less ~0.5 GiB (no reported figure found)"),
}
# The nominal size in GiB (the data sheets' "80GB" of HBM is 80 GiB). V100 and T4 came in 16 GB (V100 also 32 GB).
MEMORY_GIB = {"h100-nvl": 94, "h100-pcie": 80, "h100-sxm": 80, "h200-nvl": 141, "h200": 141, "b200": 180,
              "a100-80gb-sxm": 80, "a100-80gb-pcie": 80, "a100-40gb": 40, "l40s": 48, "l4": 24, "a10": 24,
              "rtx-pro-6000": 96, "rtx-pro-6000-maxq": 96, "rtx5090": 32, "rtx4090": 24, "rtx3090": 24,
              "v100-pcie": 16, "v100": 16, "t4": 16, "mi300x": 192}


def memory_bytes(key: str) -> int:
    """A device's usable memory in bytes, by key or name (h100-sxm -> 79.11 GiB, what torch reports)."""
    return int(USABLE_MEMORY[by_key(key).key][0] * 2**30)


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
             "bandwidth_gb_s": d.bandwidth_gb_s, "memory_gib": MEMORY_GIB[d.key],
             "usable_memory_gib": USABLE_MEMORY[d.key][0], "source": d.source,
             "memory_source": USABLE_MEMORY[d.key][1]} for d in DEVICES]
