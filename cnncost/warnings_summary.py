"""What a user's model says while cnncost builds and runs it, in one line; and what to do when its forward needs
inputs cnncost cannot make.

Torch and user code warn in many lines (a file, a line number, the source line, sometimes a stack). Inside
`collect(label)` every warning is kept instead of printed; `report()` then prints one line per model on stderr:

    cnncost: note: net.py:make raised 3 warnings: UserWarning x2 "Lazy modules are a new feature ..."; ...

Use: enter `collect(label)` wherever user code runs (it nests and may be entered many times, once per forward).
It keeps warnings only inside `summarising()`, which the command line enters around a command and which calls
`report()` when the command ends; the library, called from Python, leaves warnings to Python's own filters.
`summarised(label)` is both, for one block.

`input_hint(model, error)` names a forward whose first argument is not a tensor (`forward(batch: dict)`): cnncost
makes image tensors only, so the factory should return example inputs beside the model.
"""
from __future__ import annotations

import contextlib
import inspect
import sys
import warnings
from collections import Counter
from collections.abc import Iterator

SEEN: dict[str, Counter] = {}  # label -> (category name, first line of the message) -> times
ACTIVE: list[bool] = []  # one entry per summarising() scope entered


@contextlib.contextmanager
def summarising(stream=None) -> Iterator[None]:
    """Within, collect() keeps warnings; at the end, report() prints them."""
    ACTIVE.append(True)
    try:
        yield
    finally:
        ACTIVE.pop()
        report(stream)


@contextlib.contextmanager
def collect(label: str) -> Iterator[None]:
    """Inside summarising(): keep every warning raised inside under label, printing none of them."""
    if not ACTIVE:
        yield
        return
    seen = SEEN.setdefault(label, Counter())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # count each one: the summary says how often
        try:
            yield
        finally:
            for w in caught:
                seen[w.category.__name__, first_line(str(w.message))] += 1


def first_line(text: str, most: int = 100) -> str:
    """A message's first line, cut to `most` characters."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= most else line[:most - 3] + "..."


def summary(label: str, seen: Counter) -> str | None:
    """One line for a model's warnings, the most frequent first; None when it raised none."""
    if not seen:
        return None
    total = sum(seen.values())
    kinds = [f'{category} x{n} "{message}"' if n > 1 else f'{category} "{message}"'
             for (category, message), n in seen.most_common(2)]
    more = f"; and {len(seen) - 2} other kind(s)" if len(seen) > 2 else ""
    return f"cnncost: note: {label} raised {total} warning{'s' if total != 1 else ''}: {'; '.join(kinds)}{more}"


def report(stream=None) -> list[str]:
    """Print one line per model that warned (on stderr) and forget them; return the lines."""
    lines = [line for label, seen in SEEN.items() if (line := summary(label, seen))]
    SEEN.clear()
    for line in lines:
        print(line, file=stream or sys.stderr)
    return lines


@contextlib.contextmanager
def summarised(label: str, stream=None) -> Iterator[None]:
    """collect(label) around the block, then its one line (and any other label's) on stderr."""
    with summarising(stream), collect(label):
        yield


TENSOR_NAMES = ("Tensor", "torch.Tensor")


def input_hint(model, error: BaseException | None = None) -> str:
    """'' or, for a forward whose first argument is annotated as something other than a tensor (a dict, list,
    string, dataclass ...), or that failed as a tensor used as a mapping fails, a hint to give example inputs."""
    try:
        parameters = [p for p in inspect.signature(model.forward).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError, AttributeError):
        return ""
    if not parameters:
        return ""
    first = parameters[0]
    annotation = first.annotation
    named = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", repr(annotation))
    typed = annotation is not inspect.Parameter.empty and named not in TENSOR_NAMES
    as_mapping = error is not None and any(text in str(error) for text in (
        "object has no attribute 'keys'", "object has no attribute 'items'", "object has no attribute 'get'",
        "valid indices", "too many indices for tensor"))
    if not (typed or as_mapping):
        return ""
    what = f"{first.name}: {named}" if typed else first.name
    return (f"; its forward takes {what}, and cnncost makes only image tensors: have the factory return the "
            f"model with example inputs, `return model, (example_{first.name},)`")
