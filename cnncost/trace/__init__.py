"""Counting real PyTorch models: our meta-device tracer (counter), model loading (models), other tools (adapters).

Submodules import torch; this package itself does not.
"""
from __future__ import annotations


def count(model, size: int | None = None, batch: int = 1, channels: int = 3, device: str = "meta",
          strict: bool = False, dtype: str = "fp32", aux: bool | None = None, inputs=None):
    """cnncost's own per-layer Result of a real model: a name (registry, torchvision, 'timm:NAME',
    'file.py:factory') or an nn.Module.

    `inputs` are the model's call arguments: a tensor (or list) as the one argument, a tuple of arguments, or a
    dict of keyword arguments; by default a batch x channels x size x size image (a named model: its own input).
    An nn.Module is copied to the meta device (device='meta'; tied weights stay tied), or counted where it lives
    otherwise; if its forward fails on meta it is counted on the CPU, where it lives, instead."""
    from cnncost.errors import CnnCostError
    from cnncost.trace.counter import trace
    from cnncost.trace.models import Inputs, load
    if inputs is not None and (size is not None or batch != 1 or channels != 3):
        raise CnnCostError("inputs= gives the whole input; it cannot be combined with size, batch or channels")
    if isinstance(model, str):
        source = load(model, aux, channels=channels)
        if inputs is not None:
            source.example = inputs
        return trace(source, batch, size, device, strict, dtype)
    import torch
    if not isinstance(model, torch.nn.Module):
        raise CnnCostError(f"count() takes a model name or a torch.nn.Module, got {type(model).__name__}")
    given = Inputs.of(inputs) if inputs is not None else image(batch, channels, size)
    return count_module(model, given, device, strict, dtype)


def count_module(model, inputs, device: str = "meta", strict: bool = False, dtype: str = "fp32"):
    """An nn.Module counted on a meta copy of itself (device='meta'), or where it lives; if the forward fails on
    meta (an op with no meta kernel), counted where it lives, with a notice."""
    from cnncost.errors import CnnCostError
    from cnncost.trace.counter import trace_module
    from cnncost.trace.models import one_line
    name, failure = type(model).__name__, None
    if device == "meta":
        try:
            return trace_module(meta_copy(model), inputs.to("meta"), name, strict, dtype)
        except CnnCostError:
            raise
        except Exception as e:  # noqa: BLE001 - an op with no meta kernel: count where the model lives
            failure = one_line(e)
    where = next((p.device.type for p in model.parameters()), "cpu")
    result = trace_module(model, inputs.to(where), name, strict, dtype)
    if failure:
        result.notes.insert(0, f"forward failed on the meta device ({failure}); counted on {where} instead")
    return result


def meta_copy(model):
    """A copy of a module on the meta device, tied parameters still tied."""
    import copy

    from cnncost.trace.models import move
    return move(copy.deepcopy(model), "meta")


def image(batch: int, channels: int, size: int | None):
    """The default input of count(): one NCHW image batch on meta."""
    from cnncost.trace import models
    side = size or 224
    return models.Inputs(models.image(batch, channels, (side, side), "meta"))
