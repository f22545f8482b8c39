"""Differences between the PyTorch releases cnncost supports (torch 2.4 up to, not including, 3), in one place.

Importing this module applies the backports below (idempotent, only where the installed torch lacks the fix);
the tracer's modules import it next to torch. Anything else that depends on the torch version is a function here,
so that callers never compare version strings themselves.
"""
from __future__ import annotations

import contextlib
import re
import warnings

import torch


def torch_version(text: str | None = None) -> tuple[int, int]:
    """(major, minor) of the installed torch (or of a version string): '2.4.1+cu121' -> (2, 4)."""
    match = re.match(r"(\d+)\.(\d+)", text if text is not None else torch.__version__)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def runs_on_meta(op: str) -> bool:
    """Whether this torch has the aten op and a meta kernel for it. torch 2.4 has only FakeTensor rules for the
    CUDA attention kernels' forward (_scaled_dot_product_flash/efficient/cudnn_attention, _flash/_efficient_
    attention_forward) and no _scaled_dot_product_fused_attention_overrideable at all: called directly on meta
    tensors there, they raise. (F.scaled_dot_product_attention itself runs on meta on every release.)"""
    return hasattr(torch.ops.aten, op) and torch._C._dispatch_has_kernel_for_dispatch_key(f"aten::{op}", "Meta")


def counter_reads_flash_layout() -> bool:
    """Whether torch's FlopCounterMode reads _flash_attention_forward/backward's (B, L, H, E) layout as such.
    Before torch 2.14 it reads them as (B, H, L, E), heads and length swapped (fixed by pytorch/pytorch#184348):
    a different count, or an assertion inside the counter where key and query lengths differ."""
    return torch_version() >= (2, 14)


def sdpa_takes_enable_gqa() -> bool:
    """Whether F.scaled_dot_product_attention has enable_gqa= (grouped-query attention; torch 2.5 and later)."""
    q = torch.empty(1, 2, 1, 1, device="meta")
    try:
        torch.nn.functional.scaled_dot_product_attention(q, q[:, :1], q[:, :1], enable_gqa=True)
    except TypeError:
        return False
    return True


def cpu_attention_is_fused(query_shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> bool:
    """Whether F.scaled_dot_product_attention on CPU tensors of this query shape runs as the fused
    aten._scaled_dot_product_flash_attention_for_cpu kernel, as torch itself decides (torch._fused_sdp_choice):
    torch 2.4 fuses only 4-d (batch, heads, L, E) inputs and decomposes 3-d ones into bmm and softmax, which
    other counters then count; later releases fuse 3-d inputs too."""
    if len(query_shape) < 2:
        return False
    q = torch.empty(query_shape, dtype=dtype)
    try:
        return torch._fused_sdp_choice(q, q, q) not in (-1, 0)  # SDPBackend.ERROR, SDPBackend.MATH
    except (AttributeError, RuntimeError):
        return True


@contextlib.contextmanager
def fp32_precision(want: str | None):
    """fp32 matrix products (cuBLAS) and convolutions (cuDNN) as TensorFloat-32 ('tf32'), in full fp32 ('ieee'),
    or as they are (None), restored afterwards. Newer releases set this with the backends' fp32_precision (and
    deprecate the old flags); torch 2.4 has only torch.backends.cuda.matmul.allow_tf32 and cudnn.allow_tf32."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(matmul, "fp32_precision") and hasattr(cudnn, "conv"):
        knobs = (matmul, cudnn.conv)
        before = [k.fp32_precision for k in knobs]
        try:
            for knob in knobs if want else ():
                knob.fp32_precision = want
            yield
        finally:
            for knob, value in zip(knobs, before):
                knob.fp32_precision = value
        return
    before = matmul.allow_tf32, cudnn.allow_tf32
    try:
        if want:
            matmul.allow_tf32 = cudnn.allow_tf32 = want == "tf32"
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = before


def _checkpoint_on_meta() -> None:
    """torch.utils.checkpoint on meta tensors (torchvision's DenseNet with memory_efficient=True). The non-reentrant
    checkpoint looks up a `torch.meta` module for the RNG state of the inputs' device, and there is none: in
    checkpoint._get_device_module (fixed by pytorch/pytorch#132684, August 2024) and in torch.random.fork_rng, which
    backward's recomputation enters (pytorch/pytorch#137715, October 2024); torch 2.4 has neither fix. Each is
    probed, not read off the version. Backport both answers: the meta device has no RNG state to save or restore."""
    from torch.utils import checkpoint
    try:
        checkpoint._get_device_module("meta")
    except AttributeError:
        get_device_module = checkpoint._get_device_module

        def _get_device_module(device="cuda"):
            return torch.device("meta") if device == "meta" else get_device_module(device)

        checkpoint._get_device_module = _get_device_module
        # torch 2.4's own recompute calls torch.cpu.amp.autocast, which it deprecated itself: not the user's concern
        warnings.filterwarnings("ignore", r"`torch\.cpu\.amp\.autocast\(args\.\.\.\)` is deprecated",
                                FutureWarning, r"torch\.utils\.checkpoint")
    try:
        with torch.random.fork_rng(devices=[], device_type="meta"):
            pass
    except RuntimeError:  # "torch has no module of `meta`"
        fork_rng = torch.random.fork_rng

        @contextlib.contextmanager
        def fork_rng_or_meta(devices=None, enabled=True, _caller="fork_rng", _devices_kw="devices",
                             device_type="cuda"):
            if torch.device(device_type).type == "meta":
                yield
                return
            with fork_rng(devices, enabled, _caller, _devices_kw, device_type):
                yield

        torch.random.fork_rng = fork_rng_or_meta


_checkpoint_on_meta()
