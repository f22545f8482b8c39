"""Which model a name means, how to build it, and how many MACs one image costs (forward and training).

The counting lives here, in one place: the analytic spec when the model is registered, else torch's own
flop counter on the meta device (no memory, no weights). Only conv + linear MACs are counted (the "core",
the convention of MFU and of torchvision's `_ops`). Swap in the tracer here when it lands.
"""
from __future__ import annotations

import difflib
from functools import lru_cache

from cnncost.errors import CnnCostError
from cnncost.formulas import CORE

NO_AUX = {"googlenet": {"aux_logits": False, "init_weights": False},
          "inception_v3": {"aux_logits": False, "init_weights": False}}


@lru_cache(maxsize=None)
def torchvision_names() -> tuple[str, ...]:
    """Classification model names torchvision can build."""
    import torchvision
    return tuple(torchvision.models.list_models(module=torchvision.models))


def analytic_entry(name: str):
    """The registered analytic model for a name or alias, or None."""
    from cnncost.specs import resolve
    try:
        return resolve(name)
    except CnnCostError:
        return None


def resolve_model(name: str, runnable: bool = True) -> str:
    """The model a name or alias means (resnext50 -> resnext50_32x4d); runnable: torchvision must build it."""
    entry = analytic_entry(name)
    key = (entry.torchvision or entry.name) if entry else name.strip().lower().replace("-", "_")
    if key in torchvision_names() or (entry and not runnable):
        return key
    if entry:
        raise CnnCostError(f"model {name!r} is analytic only: torchvision has no {key} to run")
    close = difflib.get_close_matches(key, torchvision_names(), n=4, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise CnnCostError(f"unknown model {name!r}{hint}")


def default_size(name: str) -> int:
    """The model's published input resolution: the analytic registry's, else torchvision's crop size, else 224."""
    entry = analytic_entry(name)
    if entry is not None:
        return entry.resolution
    import torchvision
    try:
        transforms = torchvision.models.get_model_weights(name).DEFAULT.transforms
    except (ValueError, AttributeError, KeyError):
        return 224
    return int(getattr(transforms, "keywords", {}).get("crop_size", 224))


def build_module(name: str):
    """A randomly initialised torchvision model (never pretrained weights), without auxiliary heads."""
    import torchvision
    return torchvision.models.get_model(name, weights=None, **NO_AUX.get(name, {}))


def counted_on_meta(name: str, size: int) -> tuple[int, int]:
    """(forward, training) conv + linear MACs of one image, from torch's flop counter on the meta device.

    Only the forward pass is counted by torch: its backward count of grouped convs is wrong (grad-weight is
    counted as if groups were 1, 32x too much for a 32-channel depthwise conv). Training applies our rule
    instead: 3F, less the first layer's grad-input (the image needs no gradient); see traincost.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build_module(name).eval()
        order: list[str] = []
        core = [(n, m) for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        hooks = [m.register_forward_pre_hook(lambda *_, n=n: order.append(n)) for n, m in core]
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(1, 3, size, size))
        for hook in hooks:
            hook.remove()
    forward = counter.get_total_flops() // 2
    first = sum(counter.get_flop_counts().get(f"{type(model).__name__}.{order[0]}", {}).values()) // 2 if order else 0
    return forward, 3 * forward - first


def analytic_result(name: str, size: int):
    """The analytic per-layer Result at batch 1, or None when the model is not registered."""
    if analytic_entry(name) is None:
        return None
    from cnncost.result import Result
    from cnncost.specs import build
    return Result.from_spec(build(name, batch=1, size=size))


@lru_cache(maxsize=None)
def macs_per_image(name: str, size: int, train: bool = False) -> tuple[int, str]:
    """(conv + linear MACs of one image, where the count came from); train adds the backward pass."""
    result = analytic_result(name, size)
    if result is None:
        return counted_on_meta(name, size)[train], "torch-flop-counter"
    if not train:
        return result.core_macs, "analytic"
    from cnncost.bench.traincost import training_table
    table = training_table(result.table)
    return int(table.train_macs[table.category.isin(CORE)].sum()), "analytic"
