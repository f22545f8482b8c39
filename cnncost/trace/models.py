"""Real PyTorch models by name: our registry, torchvision, or a user's `file.py:factory` / `package.module:factory`.

Never loads weights (always ``weights=None``). GoogLeNet and Inception-v3 are built without their auxiliary
heads unless asked. Models are built on the meta device when possible: no memory, no initialisation cost.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable

from cnncost.errors import CnnCostError

AUX_MODELS = ("googlenet", "inception_v3")
AUX_NOTES = {False: "auxiliary heads left out (--aux includes them)",
             True: "auxiliary heads included: their parameters count, but they run only in training (no MACs here)"}
# Registered specs with no torchvision builder whose architecture torchvision's classes can still build.
CONSTRUCTIBLE = {"densenet264": ("DenseNet", {"growth_rate": 32, "block_config": (6, 12, 64, 48),
                                              "num_init_features": 64})}


@dataclass
class ModelSource:
    """How to build one real model, and which analytic spec (if any) it should match."""

    name: str
    factory: Callable[[], object]
    resolution: int = 224
    channels: int = 3
    spec: str | None = None
    implementation: str = ""
    paper_variant: bool = False
    notes: list[str] = field(default_factory=list)
    uninitialised_ok: bool = False

    def build(self, device: str = "meta"):
        """The model in eval mode with its parameters on `device` (built there directly when the factory allows).

        torchvision models go to a real device as zeros (built on meta, then given zeroed memory): counts do
        not depend on values, initialising VGG's 138M weights costs seconds, and garbage memory can hold slow
        denormal floats."""
        import torch
        if device != "meta" and self.uninitialised_ok:
            model = self.build("meta").to_empty(device=device).eval()
            with torch.no_grad():
                for tensor in (*model.parameters(), *model.buffers()):
                    tensor.zero_()
            return model
        try:
            with torch.device(device):
                model = self.factory()
        except Exception:  # noqa: BLE001 - some factories cannot build on meta: build on the CPU, then move
            try:
                model = self.factory()
            except Exception as e:  # noqa: BLE001 - any failure of user code is one line
                raise CnnCostError(f"factory {self.name} raised {one_line(e)}") from None
        check_module(model, f"factory {self.name}")
        return model.to(device).eval()

    def input(self, batch: int = 1, size: int | None = None, device: str = "meta"):
        """An NCHW input tensor: batch x channels x size x size (size defaults to the model's resolution)."""
        import torch
        size = self.resolution if size is None else size
        if batch <= 0 or size <= 0 or self.channels <= 0:
            raise CnnCostError(f"batch, channels and size must be positive, got batch {batch}, "
                               f"channels {self.channels}, size {size}")
        shape = (batch, self.channels, size, size)
        return torch.empty(shape, device="meta") if device == "meta" else torch.randn(shape, device=device)


def check_module(model: object, name: str) -> None:
    """A one-line error unless the factory gave an nn.Module."""
    import torch
    if not isinstance(model, torch.nn.Module):
        raise CnnCostError(f"{name} returned {type(model).__name__}, not a torch.nn.Module")


def load(name: str, aux: bool = False, kwargs: dict | None = None, channels: int = 3) -> ModelSource:
    """A model source for a registry name or alias, a torchvision name, or `file.py:factory` / `pkg.mod:factory`."""
    if ":" in name:
        from cnncost.trace.userfile import user_model
        return user_model(name, kwargs or {}, channels)
    if kwargs:
        raise CnnCostError("factory arguments (--arg) only apply to FILE.py:FACTORY or package.module:FACTORY models")
    from cnncost import specs
    try:
        entry = specs.resolve(name)
    except CnnCostError:
        return torchvision_model(name, aux)
    return registry_model(entry, aux)


def registry_model(entry, aux: bool) -> ModelSource:
    """The real model behind a registered spec: its torchvision model, or the implementation a paper variant has."""
    if entry.torchvision:
        source = torchvision_model(entry.torchvision, aux)
    elif entry.name in CONSTRUCTIBLE:
        cls, kw = CONSTRUCTIBLE[entry.name]
        source = ModelSource(entry.name, class_factory(cls, kw), implementation=f"torchvision.models.{cls}(**{kw})",
                             uninitialised_ok=True)
    else:
        base = implementation_of(entry.name)
        if base is None:
            raise CnnCostError(f"{entry.name} is an analytic-only spec with no real model to trace")
        source = registry_model(base, aux)
        source.paper_variant = True
        source.notes.append(f"{entry.name} is a paper variant; its real counterpart is {base.name}")
    source.name, source.spec, source.resolution = entry.name, entry.name, entry.resolution
    return source


def implementation_of(name: str):
    """The registered model with a real implementation that a paper variant is named after (alexnet_paper -> alexnet)."""
    from cnncost import specs
    parts = name.split("_")
    for cut in range(len(parts) - 1, 0, -1):
        entry = specs.MODELS.get("_".join(parts[:cut]))
        if entry and (entry.torchvision or entry.name in CONSTRUCTIBLE):
            return entry
    return None


def class_factory(cls: str, kwargs: dict) -> Callable[[], object]:
    """A factory building torchvision.models.<cls>(**kwargs)."""
    def build():
        import torchvision
        return getattr(torchvision.models, cls)(**kwargs)
    return build


def torchvision_model(name: str, aux: bool = False) -> ModelSource:
    """A torchvision classification model by name, weights=None, auxiliary heads only when asked."""
    import torchvision
    key = name.strip().lower().replace("-", "_")
    known = torchvision.models.list_models(module=torchvision.models)
    if key not in known:
        from cnncost import specs
        close = difflib.get_close_matches(key, list(dict.fromkeys([*specs.MODELS, *specs.ALIASES, *known])), n=4,
                                          cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `cnncost list` or torchvision.models"
        raise CnnCostError(f"unknown model {name!r}{hint}")
    extra = {"aux_logits": aux, "init_weights": False} if key in AUX_MODELS else {}

    def build():
        return torchvision.models.get_model(key, weights=None, **extra)

    notes = [AUX_NOTES[aux]] if key in AUX_MODELS else []
    return ModelSource(key, build, default_resolution(key), implementation=f"torchvision.models.{key}",
                       notes=notes, uninitialised_ok=True)


def default_resolution(name: str) -> int:
    """A torchvision model's evaluation crop size from its weights' metadata (no download), else 224."""
    import torchvision
    try:
        transforms = torchvision.models.get_model_weights(name).DEFAULT.transforms
        return int(transforms.keywords.get("crop_size", 224))
    except (ValueError, AttributeError, KeyError, TypeError):
        return 224


def torchvision_meta(name: str) -> dict:
    """torchvision's published num_params and _ops (GMACs) for a model, read offline; {} when it has none."""
    import torchvision
    try:
        meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    except (ValueError, AttributeError, KeyError):
        return {}
    return {k: meta[k] for k in ("num_params", "_ops") if k in meta}


def one_line(e: BaseException) -> str:
    """An exception as 'Type: first line of message'."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
