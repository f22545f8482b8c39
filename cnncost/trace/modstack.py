"""The stack of module calls in progress, kept by forward hooks: one context manager registers them on every
module of a model and removes them on exit, as torch's ModTracker does; trackers are told of each call."""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch


class Call(NamedTuple):
    """One module call: its number in call order (0: outside any call), module path ('' for the root) and class."""

    index: int
    path: str
    cls: str


class ModuleStack:
    """The module calls in progress, innermost last; on_enter(call) and on_leave(call) are told of each one."""

    def __init__(self, model: torch.nn.Module, on_enter: Callable[[Call], None] | None = None,
                 on_leave: Callable[[Call], None] | None = None):
        self.model = model
        self.calls = [Call(0, "", type(model).__name__)]  # the root's own ops, outside any call
        self.count = 0
        self.on_enter, self.on_leave = on_enter, on_leave
        self.handles: list = []

    @property
    def current(self) -> Call:
        """The innermost call in progress."""
        return self.calls[-1]

    def inside(self) -> bool:
        """Whether a module call is in progress."""
        return len(self.calls) > 1

    def enter(self, path: str, module: torch.nn.Module) -> Callable:
        """A forward pre-hook that pushes a new call of module `path`."""
        cls = type(module).__name__

        def hook(*_):
            self.count += 1
            call = Call(self.count, path, cls)
            self.calls.append(call)
            if self.on_enter:
                self.on_enter(call)
        return hook

    def leave(self, *_) -> None:
        """A forward hook (also run when the forward raises) that pops the call."""
        call = self.calls.pop()
        if self.on_leave:
            self.on_leave(call)

    def __enter__(self) -> "ModuleStack":
        for path, module in self.model.named_modules():
            self.handles.append(module.register_forward_pre_hook(self.enter(path, module)))
            self.handles.append(module.register_forward_hook(self.leave, always_call=True))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
