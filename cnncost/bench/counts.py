"""Which model a name means and how many MACs one image costs it (forward, and forward + backward).

One place for the counting: the analytic spec when the model is registered, else our meta-device tracer (no
memory, no weights). Models are named and built by the tracer's loader (registry names and aliases,
torchvision names, `file.py:factory`). Only conv + linear MACs enter the per-image counts: the "core", the
convention of MFU and of torchvision's `_ops`.
"""
from __future__ import annotations

from functools import lru_cache

from cnncost.errors import CnnCostError
from cnncost.formulas import CORE


def model_source(name: str):
    """The tracer's source for a name: how to build the real model, its resolution, its analytic spec."""
    from cnncost.trace.models import load
    return load(name)


def analytic_entry(name: str):
    """The registered analytic model for a name or alias, or None."""
    from cnncost.specs import resolve
    try:
        return resolve(name)
    except CnnCostError:
        return None


@lru_cache(maxsize=None)
def per_layer(name: str, size: int, runs: bool = True):
    """Per-layer costs at batch 1: the analytic spec when registered (when the model runs: only if the spec is
    that model, not a paper variant of it), else our tracer on the meta device."""
    from cnncost.result import Result
    from cnncost.specs import build
    entry = analytic_entry(name)
    source = model_source(name) if runs or entry is None else None
    if entry is not None and not (source and source.paper_variant):
        return Result.from_spec(build(entry.name, batch=1, size=size))
    from cnncost.trace.counter import trace
    return trace(source, batch=1, size=size)


def core_training_macs(result) -> int:
    """Conv + linear MACs of forward + backward, by the per-kind rules of traincost."""
    from cnncost.bench.traincost import training_table
    table = training_table(result.table)
    return int(table.train_macs[table.category.isin(CORE)].sum())


def macs_per_image(name: str, size: int, train: bool = False) -> tuple[int, str]:
    """(conv + linear MACs of one image, where the count came from); train adds the backward pass."""
    result = per_layer(name, size)
    return (core_training_macs(result) if train else result.core_macs), result.source
