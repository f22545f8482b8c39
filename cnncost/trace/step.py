"""One ImageNet-style training step on any device (meta included): forward, cross-entropy, backward, optimizer.

Shared by the training-cost tracer and the memory tracker, so both see exactly the same aten ops.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch

OPTIMIZERS = ("sgd", "adamw")
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def make_optimizer(model: torch.nn.Module, name: str = "sgd") -> torch.optim.Optimizer:
    """SGD with momentum 0.9 (the ResNet recipe) or AdamW, in the per-parameter loop (foreach=False) so each
    parameter's update is its own ops; the state is created lazily by the first step."""
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4, foreach=False)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05, foreach=False)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


def autocast(device: str, dtype: str):
    """torch.autocast for bf16 / fp16 mixed precision on the device's type (meta runs as CUDA would), else none."""
    low = AUTOCAST[dtype]
    if low is None:
        return nullcontext()
    kind = "cpu" if device == "cpu" else "cuda"
    return torch.autocast(kind, dtype=low)


def training_step(model: torch.nn.Module, inputs: tuple, targets: torch.Tensor, optimizer: torch.optim.Optimizer,
                  dtype: str = "fp32", device: str = "meta") -> None:
    """model.train(); loss = cross_entropy(model(*inputs), targets); loss.backward(); optimizer.step(); zero grads."""
    model.train()
    with autocast(device, dtype):
        logits = model(*inputs)
        logits = logits[0] if isinstance(logits, (tuple, list)) else getattr(logits, "logits", logits)
        loss = torch.nn.functional.cross_entropy(logits.float(), targets)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
