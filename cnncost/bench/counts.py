"""Which model a name means and how many MACs one image costs it (forward, and forward + backward).

One place for the counting: the analytic spec when the model is registered, else our meta-device tracer (no
memory, no weights). Models are named and built by the tracer's loader (registry names and aliases,
torchvision names, `file.py:factory`). Only conv + linear MACs enter the per-image counts: the "core", the
convention of MFU and of torchvision's `_ops`. A training step's count is traced (forward + backward), not a rule.
"""
from __future__ import annotations

from functools import lru_cache

from cnncost.errors import CnnCostError


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
    from cnncost.trace.counter import count_source
    return count_source(source, batch=1, size=size)


TRACE_BATCH = 2  # a batch norm trains only on more than one value per channel; conv + linear MACs scale with it


@lru_cache(maxsize=None)
def traced_training_macs(name: str, size: int) -> int:
    """Conv + linear MACs per image of a training step traced on meta (cnncost.trace.train): forward + grad-input
    + grad-weight (+ what checkpointing recomputes), the image needing no gradient, as bench's timed step."""
    from cnncost.trace.train import STEP_PHASES, train_source
    result = train_source(model_source(name), batch=TRACE_BATCH, size=size)
    return sum(result.core(phase) for phase in STEP_PHASES) // TRACE_BATCH


def source_work(source, size: int | None, mode: str) -> tuple[int, int, str]:
    """(forward conv + linear MACs per image, those of the timed step, where they came from) of a model source
    as it is built (its --arg, --input, --channels in it), traced on meta: per image = over the inputs' batch."""
    from cnncost.trace.counter import count_source
    from cnncost.trace.train import STEP_PHASES, train_source
    forward = count_source(source, size=size)
    per_image = forward.core_macs // max(forward.input_shape[0] if forward.input_shape else 1, 1)
    if mode != "train":
        return per_image, per_image, forward.source
    step = train_source(source, batch=None if source.shapes else TRACE_BATCH, size=size)
    images = max(step.input_shape[0] if step.input_shape else 1, 1)
    return per_image, sum(step.core(phase) for phase in STEP_PHASES) // images, forward.source


def macs_per_image(name: str, size: int, train: bool = False) -> tuple[int, str]:
    """(conv + linear MACs of one image, where the forward count came from); train: of a traced training step."""
    result = per_layer(name, size)
    return (traced_training_macs(name, size) if train else result.core_macs), result.source
