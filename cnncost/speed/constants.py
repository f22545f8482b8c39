"""The stated constants that turn a GPU's data sheet into a device profile, each with its source, in one place.

A named GPU needs no measurement: its profile is the data sheet (cnncost.bench.devices: dense peaks per dtype,
bandwidth) times the efficiencies below. Fitted constants were set once on timm's published RTX 3090 AMP
inference tables (benchmark-infer-amp-nchw/nhwc-pt240-cu124-rtx3090.csv, github.com/huggingface/pytorch-image-
models/results) by benchmarks/fit_gpu_constants.py; no other published throughput was used, so every other GPU
is a prediction. COUNT says how many numbers the GPU model rests on. No torch import.
"""
from __future__ import annotations

from cnncost.speed.device import OP_CLASSES, DeviceProfile, Rate

FIT = "fit on timm's RTX 3090 AMP nchw + nhwc tables (benchmarks/fit_gpu_constants.py)"

# Tensor cores take fp16/bf16 convolutions whose channels per group are a multiple of 8; cuDNN pads the rest
# (NVIDIA Deep Learning Performance Guide, "Channels In And Out Requirements": multiples of 8 for FP16).
TENSOR_CORE_ALIGN = 8

# Fraction of the data sheet's dense tensor-core peak a large op of each class reaches (depthwise convolution:
# of the plain FP32 peak, as it runs on the CUDA cores). Above 1: the RTX 3090 runs above its rated boost clock.
COMPUTE_EFFICIENCY = {"conv_dense": 1.06, "conv_grouped": 0.79, "conv_depthwise": 0.084, "matmul": 1.10,
                      "attention": 0.51}
# Fraction of the data sheet's memory bandwidth a large memory-bound op reaches: norms (above 1: eval-mode batch
# norm is faster than its counted reads and writes allow), and every other class.
NORM_BANDWIDTH_EFFICIENCY = 1.26
BANDWIDTH_EFFICIENCY = 0.605
# Autocast (fp16/bf16): how many times its fp16 bytes an op autocast keeps in fp32 moves (fp32 input copy, fp32
# output, the cast back), and an elementwise op of a model whose norms make the residual stream fp32.
AUTOCAST_FP32_TRAFFIC = 5.0
FP32_STREAM_TRAFFIC = 1.38
# A kernel's fixed cost on the device: back-to-back launches of tiny kernels run at about one per 2-3 us.
KERNEL_FIXED_S = 2.5e-6
# Host time to issue one op in eager PyTorch (Python module call, dispatcher, CUDA launch); the GPU overlaps it.
LAUNCH_S = 15e-6

SOURCES = {
    "TENSOR_CORE_ALIGN": "NVIDIA Deep Learning Performance Guide (channels multiple of 8 for FP16 tensor cores)",
    "COMPUTE_EFFICIENCY": FIT,
    "NORM_BANDWIDTH_EFFICIENCY": FIT,
    "BANDWIDTH_EFFICIENCY": FIT,
    "AUTOCAST_FP32_TRAFFIC": FIT,
    "FP32_STREAM_TRAFFIC": FIT,
    "KERNEL_FIXED_S": "stated: an empty CUDA kernel's launch-to-launch time (not fittable on batch-1024 tables)",
    "LAUNCH_S": "stated: eager PyTorch's per-op host overhead, 10-20 us (not fittable on batch-1024 tables)",
}
TENSOR_CLASSES = ("conv_dense", "conv_grouped", "matmul", "attention")


def count() -> int:
    """How many numbers the GPU model rests on: each efficiency once, and every other constant above."""
    return len(COMPUTE_EFFICIENCY) + len(SOURCES) - 1


def datasheet_profile(device) -> DeviceProfile:
    """The device profile of a data-sheet entry (cnncost.bench.devices.Device): per dtype it has a peak for,
    tensor classes at that peak x their efficiency, every other class at the FP32 peak, all at the bandwidth x
    their bandwidth efficiency, with KERNEL_FIXED_S per op and LAUNCH_S per op on the host."""
    from cnncost.bench.devices import BENCH_DTYPES, memory_bytes
    bandwidth = device.bandwidth_gb_s * 1e9
    peaks = {d: device.peak_tflops(d) * 1e12 for d in BENCH_DTYPES if device.peak_tflops(d) is not None}
    rates = {}
    for dtype, peak in peaks.items():
        rates[dtype] = {}
        for cls in OP_CLASSES:
            base = peak if cls in TENSOR_CLASSES else device.fp32 * 1e12
            eff = COMPUTE_EFFICIENCY.get(cls, 1.0)
            beff = NORM_BANDWIDTH_EFFICIENCY if cls == "norm" else BANDWIDTH_EFFICIENCY
            rates[dtype][cls] = Rate(base * eff, bandwidth * beff, KERNEL_FIXED_S,
                                     f"data sheet x {eff:g} compute, x {beff:g} bandwidth")
    return DeviceProfile(device.key, device.name, "cuda", peaks, bandwidth, rates, measured=False,
                         memory_bytes=memory_bytes(device.key), launch_s=LAUNCH_S,
                         notes=[f"data sheet: {device.source}", f"constants: {FIT}"])
