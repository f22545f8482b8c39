"""Where a model runs when it cannot run on the meta device: a forward (or training step) that fails there (an op
with no meta kernel, a tensor made on the CPU inside forward) runs again on its source's fallback device, when
its inputs and weights fit in memory, and its notes say so. One fallback serves counting and training."""
from __future__ import annotations

import os
from typing import Callable

import torch
from torch.utils._pytree import tree_leaves

from cnncost.errors import CnnCostError
from cnncost.trace.sources import ModelSource, one_line
from cnncost.warnings_summary import collect, input_hint


def with_cpu_fallback(source: ModelSource, batch: int | None, size: int | None, device: str, run: Callable, what: str,
                      done: str, hint: Callable[[Exception], str] = lambda e: ""):
    """run(device); if it fails on meta, run(source.fallback) instead (when the inputs and weights fit in memory),
    its notes saying so; any other failure of user code is one line naming `what` failed, plus hint(error) (a
    hint stops the fallback) or else inputs_hint. The model's warnings are kept for one summary line."""
    try:
        with collect(source.name):
            result = run(device)
    except CnnCostError:
        raise
    except Exception as e:  # noqa: BLE001 - user models fail in any way; report one line or fall back
        extra = hint(e)
        if device != "meta" or extra:
            where = "the meta device" if device == "meta" else device
            extra = extra or inputs_hint(source, e)
            raise CnnCostError(f"{source.name}: {what} failed on {where}: {one_line(e)}{extra}") from None
        check_cpu_room(source, batch, size, e)
        try:
            result = with_cpu_fallback(source, batch, size, source.fallback, run, what, done, hint)
        except CnnCostError as again:
            same = one_line(e) in str(again)
            raise CnnCostError(str(again) + ("" if same else f" (on meta: {one_line(e)})")) from None
        result.notes.insert(0, f"{what} failed on the meta device ({one_line(e)}); {done} on "
                               f"{source.fallback_label} instead")
        result.device = source.fallback
        return result
    result.notes = list(source.notes) + result.notes
    result.assumptions = dict(source.assumptions)
    return result


def inputs_hint(source: ModelSource, error: Exception) -> str:
    """The advice to return example inputs from the factory, for a forward that failed on the image tensors
    cnncost made (one whose first argument is not a tensor); '' when the inputs were given or it does not apply."""
    if source.example is not None or source.shapes:
        return ""
    try:
        with collect(source.name):
            model, example = source.instantiate("meta")
    except Exception:  # noqa: BLE001 - the failure being explained is the one to report
        return ""
    return "" if example is not None else input_hint(model, error)


def available_bytes() -> int:
    """Physical memory free now (Linux/macOS sysconf); a large number where the platform cannot say."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def check_cpu_room(source: ModelSource, batch: int | None, size: int | None, error: Exception) -> None:
    """Refuse the fallback, in one line, when the inputs and weights alone need over half the free memory."""
    try:
        model, example = source.instantiate("meta")
        inputs = source.inputs(batch, size, "meta", example)
    except Exception:  # noqa: BLE001 - the real attempt will report what is wrong
        return
    tensors = [*tree_leaves((inputs.args, inputs.kwargs)), *model.parameters(), *model.buffers()]
    needed = sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))
    free = available_bytes()
    if needed > free // 2:
        raise CnnCostError(f"{source.name}: forward failed on meta ({one_line(error)}), and counting on the CPU "
                           f"would need {needed / 1e9:,.1f} GB for the inputs and weights alone, more than half of "
                           f"the {free / 1e9:,.1f} GB free; use a smaller --batch, --size or --input")
