"""One registration helper for every registry (formulas by layer kind, aten-op handlers, model specs).

A registry maps names to entries; registering a name twice is an error, so two modules cannot silently
overwrite each other's entries.
"""
from __future__ import annotations

from typing import Callable, Generic, Iterable, TypeVar

T = TypeVar("T")


class Registry(dict, Generic[T]):
    """Named entries, each name registered once."""

    def __init__(self, what: str, taken: Callable[[str], bool] = lambda name: False):
        super().__init__()
        self.what = what
        self.taken = taken  # names that another table already claims (ops that are free, model aliases)

    def add(self, names: Iterable[str], entry: T) -> T:
        """Register an entry under one or more names; a name registered twice is an error."""
        for name in names:
            if name in self or self.taken(name):
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self[name] = entry
        return entry

    def register(self, *names: str) -> Callable[[T], T]:
        """A decorator registering its function under names."""
        return lambda entry: self.add(names, entry)
