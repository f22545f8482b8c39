"""Counting real PyTorch models: our meta-device tracer (counter), model sources (sources, models, userfile), a
training step (step, train, memory) and other tools (adapters).

Submodules import torch; this package itself does not.
"""
from __future__ import annotations


def count(model, size: int | None = None, batch: int | None = None, channels: int = 3, device: str = "meta",
          strict: bool = False, dtype: str = "fp32", aux: bool | None = None, inputs=None):
    """cnncost's own per-layer Result of a real model: a name (registry, torchvision, 'timm:NAME',
    'file.py:factory') or an nn.Module.

    `inputs` are the model's call arguments: a tensor (or list) as the one argument, a tuple of arguments, or a
    dict of keyword arguments (`batch` re-batches them); by default a batch x channels x size x size image (a named
    model: its own input, or its factory's example inputs, which batch and size adapt). An nn.Module is copied to
    the meta device (device='meta'; tied weights stay tied), or counted where it lives otherwise; if its forward
    fails on meta it is counted where it lives instead."""
    from cnncost.errors import CnnCostError
    from cnncost.trace.counter import count_source
    from cnncost.trace.models import load
    from cnncost.trace.sources import Inputs, image, module_source
    if inputs is not None and (size is not None or channels != 3):
        raise CnnCostError("inputs= gives the whole input; it cannot be combined with size or channels (batch "
                           "re-batches it)")
    if isinstance(model, str):
        return count_source(load(model, aux, channels=channels, example=inputs), batch, size, device, strict, dtype)
    import torch
    if not isinstance(model, torch.nn.Module):
        raise CnnCostError(f"count() takes a model name or a torch.nn.Module, got {type(model).__name__}")
    if inputs is None:  # the default image, at the batch and size asked
        inputs, batch = Inputs(image(batch or 1, channels, (size or 224, size or 224), "meta")), None
    source = module_source(model, Inputs.of(inputs))
    return count_source(source, batch, None, device if device == "meta" else source.fallback, strict, dtype)
