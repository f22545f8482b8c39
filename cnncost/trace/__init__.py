"""Counting real PyTorch models: our meta-device tracer (counter), model loading (models), other tools (adapters).

Submodules import torch; this package itself does not.
"""
from __future__ import annotations


def count(model, size: int | None = None, batch: int = 1, channels: int = 3, device: str = "meta",
          strict: bool = False, dtype: str = "fp32", aux: bool = False):
    """cnncost's own per-layer Result of a real model: a name (registry, torchvision, 'file.py:factory') or an
    nn.Module. An nn.Module is copied to the meta device (device='meta'), or counted where it lives otherwise."""
    from cnncost.trace.counter import trace, trace_module
    from cnncost.trace.models import load
    if isinstance(model, str):
        return trace(load(model, aux, channels=channels), batch, size, device, strict, dtype)
    import copy

    import torch
    if not isinstance(model, torch.nn.Module):
        from cnncost.errors import CnnCostError
        raise CnnCostError(f"count() takes a model name or a torch.nn.Module, got {type(model).__name__}")
    if device == "meta":
        model = copy.deepcopy(model).to("meta")
    where = next((p.device for p in model.parameters()), torch.device("cpu")) if device != "meta" else "meta"
    x = torch.empty(batch, channels, size or 224, size or 224, device=where)
    return trace_module(model, x if where == "meta" else x.normal_(), type(model).__name__, strict, dtype)
