"""The registry of analytic model specs: names with wildcards and aliases, resolved to builders."""
from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Callable

from cnncost.errors import CnnCostError
from cnncost.registry import Registry
from cnncost.specs.base import Builder, Spec


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its builder and the arguments that make this variant."""

    name: str
    build: Callable[..., Spec]
    resolution: int
    kwargs: dict = field(default_factory=dict)
    torchvision: str | None = None
    family: str = ""
    paper: dict = field(default_factory=dict)


ALIASES: Registry[str] = Registry("model name")  # alias -> model name
MODELS: Registry[ModelEntry] = Registry("model name", taken=ALIASES.__contains__)
ALIASES.taken = MODELS.__contains__


def register(name: str, build: Callable[..., Spec], resolution: int = 224, aliases: tuple[str, ...] = (),
             torchvision: str | None = None, family: str = "", paper: dict | None = None, **kwargs) -> None:
    """Register a model variant: builder plus keyword arguments; a name or alias registered twice is an error."""
    if name in aliases:
        raise ValueError(f"model name {name!r} is registered twice")
    MODELS.add([name], ModelEntry(name, build, resolution, kwargs, torchvision, family, paper or {}))
    ALIASES.add(aliases, name)


def resolve(name: str) -> ModelEntry:
    """The entry for a name or alias (case-insensitive); unknown names list the closest ones."""
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key in MODELS:
        return MODELS[key]
    close = difflib.get_close_matches(key, [*MODELS, *ALIASES], n=4, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see `cnncost list`"
    raise CnnCostError(f"unknown model {name!r}{hint}")


def names(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style wildcard (an alias matches its model)."""
    pattern = pattern.lower()
    hits = {m for m in MODELS if fnmatch.fnmatch(m, pattern)}
    hits |= {m for a, m in ALIASES.items() if fnmatch.fnmatch(a, pattern)}
    return sorted(hits, key=list(MODELS).index)


def build(name: str, batch: int | None = None, size: int | None = None) -> Spec:
    """The layer list of a model at an input size (default: its published resolution) and batch."""
    entry = resolve(name)
    size = entry.resolution if size is None else size
    batch = 1 if batch is None else batch
    if batch <= 0 or size <= 0:
        raise CnnCostError(f"batch and input size must be positive, got batch {batch} and size {size}")
    return entry.build(Builder(entry.name, (batch, 3, size, size)), **entry.kwargs)
