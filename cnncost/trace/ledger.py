"""Parameter identity: which tensors are a model's parameters and buffers (a view or copy of one is that one),
who owns each (a tied weight: its first owner), and which the ops have read so far, so each is counted once."""
from __future__ import annotations

from typing import Any

import torch

from cnncost.trace.ops.common import iter_tensors


class ParamLedger:
    """The parameters and buffers of a model, their aliases, owners, and the ones read so far."""

    def __init__(self, model: torch.nn.Module):
        self.owners = {id(t): (True, t) for t in model.parameters()}
        self.owners.update({id(t): (False, t) for t in model.buffers()})
        self.aliases: dict[int, tuple[int, torch.Tensor]] = {}
        self.seen: set[int] = set()
        self.module_of: dict[int, str] = {}  # parameter / buffer id -> the module path owning it (first, if tied)
        self.shapes: dict[str, list[tuple[str, tuple]]] = {}  # module path -> (parameter's own name, shape)
        self.names: dict[int, str] = {}  # parameter id -> its own name (weight, bias, in_proj_weight, ...)
        for name, p in model.named_parameters(remove_duplicate=False):
            owner, _, leaf = name.rpartition(".")
            self.module_of.setdefault(id(p), owner)
            self.names.setdefault(id(p), leaf)
            self.shapes.setdefault(owner, []).append((leaf, tuple(p.shape)))
        for name, b in model.named_buffers(remove_duplicate=False):
            self.module_of.setdefault(id(b), name.rpartition(".")[0])

    def alias(self, source: torch.Tensor | None, out: Any) -> None:
        """A view or copy of a parameter is that parameter (linear's weight reaches addmm through aten.t)."""
        key = self.key(source) if source is not None else None
        if key is not None and isinstance(out, torch.Tensor):
            self.aliases[id(out)] = (key, out)

    def key(self, t: torch.Tensor) -> int | None:
        """The id of the parameter or buffer a tensor is (or views); None for activations."""
        if id(t) in self.aliases:
            return self.aliases[id(t)][0]
        return id(t) if id(t) in self.owners else None

    def reads_any(self, args: Any) -> bool:
        """Whether an op's arguments include a parameter or buffer (or a view of one)."""
        return any(self.key(t) is not None for t in iter_tensors(args))

    def first_reads(self, args: Any) -> list[tuple[str, bool, int]]:
        """(owning module path, is a parameter, elements) of each parameter or buffer an op reads for the first
        time; they are then seen."""
        found = []
        for t in iter_tensors(args):
            key = self.key(t)
            if key is not None and key not in self.seen:
                self.seen.add(key)
                is_param, tensor = self.owners[key]
                found.append((self.module_of.get(key, ""), is_param, tensor.numel()))
        return found
