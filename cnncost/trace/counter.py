"""Our own counter: every aten op of a real nn.Module's forward, seen under a dispatch mode on the meta device.

Each op is attributed to the innermost module being called (``(model)`` for the root) and costed by the same
formulas as the analytic specs, with the hyper-parameters read from the op's own arguments. So ``F.conv2d``,
``x + y``, ``x * s`` and ``torch.cat`` count exactly like nn.Conv2d and friends. Rows are one per op call (a
composite layer, such as attention, one per part, named module.part). Parameters are counted once per tensor, at
the first op that reads them. Ops with no formula become
rows of their own and are listed in ``Result.unsupported``; never silently zero.

The counter composes small trackers: the module call stack (modstack), parameter identity (ledger), costs by
formula (costing) and the function-level mode (functions).
"""
from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from cnncost.errors import CnnCostError
from cnncost.formulas import Cost
from cnncost.result import Result
from cnncost.trace.costing import Costs, OpSequence, layer_seen, op_label, run_op, tracking
from cnncost.trace.fallback import with_cpu_fallback
from cnncost.trace.functions import FunctionMode
from cnncost.trace.kinds import root_name
from cnncost.trace.ledger import ParamLedger
from cnncost.trace.modstack import ModuleStack
from cnncost.trace.ops import Layer
from cnncost.trace.ops.common import first_tensor, shape
from cnncost.trace.sources import Inputs, ModelSource
from cnncost.trace.table import fmt_ops, result_of

SOURCE = "cnncost trace"
# Composite layers booked as their parts, each in its own kind's row (attention: the two products in a
# linear row, the scale and softmax in theirs), so that core MACs stay conv + linear.
COMPOSITES = frozenset(["scaled_dot_product_attention", "multi_head_attention", "rnn"])  # rnn: LSTM/GRU/RNN


class ForwardCounter(TorchDispatchMode):
    """Collects one row per op call of a forward pass (per part of a composite layer)."""

    def __init__(self, model: torch.nn.Module, sequence: OpSequence | None = None):
        super().__init__()
        self.sequence = sequence  # the ops in order with their rows, when a profile is joined to this count
        self.modules = ModuleStack(model)
        self.ledger = ParamLedger(model)
        self.costs = Costs()
        self.functions = FunctionMode(self.book)
        self.rows: list[dict] = []  # one per op call (and part), in call order

    def active(self):
        """A context in which the module stack, the function mode and this dispatch mode all track."""
        return tracking(self, self.modules, self.functions)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = run_op(func, args, kwargs)
        if self.sequence is not None:
            self.sequence.seen(func)
        if self.functions.muted:
            return out
        layer, booked = layer_seen(func, args, kwargs, out, self.ledger)
        if booked:
            self.book(layer, args, out, func)
        return out

    def book(self, layer: Layer | None, args: tuple, out: Any, func) -> None:
        """One op's row (a composite's: one per part), with the parameters it reads for the first time."""
        op = op_label(func)
        c = self.costs.of_op(layer, op, args, out)
        parts = c.parts if c.kind in COMPOSITES else (("", c),)
        rows = [self.add(part, op, suffix, part.out_shape if c.parts else shape(first_tensor(out)))
                for suffix, part in parts]
        if self.sequence is not None:
            self.sequence.booked(rows[0])
        named = {suffix: row for (suffix, _), row in zip(parts, rows) if suffix}
        for owner, is_param, n in self.ledger.first_reads(args):  # a part's own module (out_proj), else the first
            named.get(owner.rpartition(".")[2], rows[0])["params" if is_param else "buffers"] += n

    def add(self, c: Cost, op: str, part: str, out_shape: tuple) -> dict:
        """A new row of the current module call: one op (or part), named module.part for a composite's parts."""
        call, origin = self.modules.current, self.functions.origin
        name = root_name(call.path) if not part else f"{call.path}.{part}" if call.path else part
        row = {"name": name, "module": call.cls, "costs": [c], "params": 0, "buffers": 0,
               "ops": [op, origin] if origin else [op], "out_shape": out_shape}
        self.rows.append(row)
        return row


def count_module(model: torch.nn.Module, x: Any, name: str = "model", strict: bool = False,
                 dtype: str = "fp32", sequence: OpSequence | None = None) -> Result:
    """Count a real module on its inputs (meta or real tensors, where the module is): a tensor or list (one
    argument), a tuple (the arguments), a dict (keyword arguments) or an Inputs; per-layer rows in the shared
    Result format (with `sequence`, the ops seen in order with their rows' positions in the table)."""
    inputs = Inputs.of(x)
    counter = ForwardCounter(model, sequence)
    training = model.training
    try:
        model.eval()
        with torch.no_grad(), counter.active():
            if has_forward(model):  # a module without one (fvcore's NetWithReuse): its parameters only
                model(*inputs.args, **inputs.kwargs)
    finally:
        model.train(training)
    if strict and counter.costs.unsupported:
        raise CnnCostError(f"{name}: ops with no formula (--strict): {fmt_ops(counter.costs.unsupported)}")
    result = result_of(model, counter.rows, counter.ledger, counter.costs.unsupported, inputs, name, SOURCE, dtype)
    if sequence is not None:  # rows by their position in the table
        position = {id(row): i for i, row in enumerate(counter.rows)}
        sequence.ops = [[op, None if row is None else position[id(row)]] for op, row in sequence.ops]
    if not has_forward(model):
        result.notes.insert(0, f"{type(model).__name__} has no forward: only its parameters are counted")
    return result


def has_forward(model: torch.nn.Module) -> bool:
    """Whether a module defines forward (nn.Module's own raises NotImplementedError)."""
    return type(model).forward is not torch.nn.Module.forward


def count_source(source: ModelSource, batch: int | None = None, size: int | None = None, device: str = "meta",
                 strict: bool = False, dtype: str = "fp32") -> Result:
    """Count a model source at an input size and batch; if its forward fails on meta (an op with no meta kernel,
    such as detection's nonzero), count it on its fallback device instead, with a notice: `Result.device` says
    where it ran."""
    def run(where: str) -> Result:
        model, example = source.instantiate(where)
        return count_module(model, source.inputs(batch, size, where, example), source.name, strict, dtype)
    return with_cpu_fallback(source, batch, size, device, run, "forward", "counted")
