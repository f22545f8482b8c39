"""Differences between the PyTorch releases cnncost supports (torch 2.4 up to, not including, 3), in one place.

Importing this module applies the backports below (idempotent, only where the installed torch lacks the fix);
the tracer's modules import it next to torch. Anything else that depends on the torch version is a function here,
so that callers never compare version strings themselves.
"""
from __future__ import annotations

import re
import warnings

import torch


def torch_version(text: str | None = None) -> tuple[int, int]:
    """(major, minor) of the installed torch (or of a version string): '2.4.1+cu121' -> (2, 4)."""
    match = re.match(r"(\d+)\.(\d+)", text if text is not None else torch.__version__)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


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


def _checkpoint_on_meta() -> None:
    """torch.utils.checkpoint on meta tensors (torchvision's DenseNet with memory_efficient=True). The non-reentrant
    checkpoint looks up a `torch.meta` module for the RNG state of the inputs' device, and there is none: in
    checkpoint._get_device_module before torch 2.5 (fixed by pytorch/pytorch#132684), and in torch.random.fork_rng,
    which backward's recomputation enters, before torch 2.6 (pytorch/pytorch#137715). Backport both answers: the
    meta device has no RNG state to save or restore."""
    import contextlib

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
