"""The training step traced: forward, loss, backward and optimizer multiply-adds per module, on the meta device.

The step is ``cnncost.trace.step.training_step`` (the same ops the memory tracker sees). Every aten op is costed
by the formulas, as the forward counter does, and attributed:

- forward ops to the innermost module call, as ``trace`` does; loss ops (after the model's forward) to ``(loss)``;
- backward ops to the module whose forward created the autograd node that runs them. Each module call records
  the range of autograd sequence numbers its forward created (nodes are numbered as they are made), and during
  backward ``torch._C._current_autograd_node()`` names the node being run: the innermost call whose range holds
  its number owns it. This is exact where torch's ``ModTracker`` (multi-grad hooks on inputs and outputs) must
  guess, e.g. for a first layer whose input needs no gradient;
- forward ops that checkpointing re-runs inside backward (they run with grad mode on, which plain backward ops
  never do) to the re-entered module, in their own ``recompute_macs`` column;
- optimizer ops to the module owning the parameter being updated (its gradient and state are known, and every
  result inherits the owner of its operands).

Backward ops' costs are split into grad-input, grad-weight and grad-bias by their parts (``conv2d_backward``,
``norm_backward``); a matrix product in backward is a grad-weight when it reads no parameter and produces a
parameter's shape (linear's dW = dY^T X), else a grad-input (dX = dY W).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch.utils._pytree import tree_leaves

from torch.utils._python_dispatch import TorchDispatchMode

from cnncost.errors import CnnCostError
from cnncost.formulas import CORE, Cost
from cnncost.trace.costing import Costs, layer_seen, op_label, run_op, tracking
from cnncost.trace.counter import COMPOSITES
from cnncost.trace.fallback import with_cpu_fallback
from cnncost.trace.fastpath import backward_output
from cnncost.trace.functions import FunctionMode
from cnncost.trace.kinds import root_name
from cnncost.trace.ledger import ParamLedger
from cnncost.trace.modstack import Call, ModuleStack
from cnncost.trace.ops import layer_of
from cnncost.trace.ops.common import first_tensor, shape
from cnncost.trace.step import AUTOCAST, OPTIMIZERS, as_inputs, ready_optimizer, targets_for, training_step
from cnncost.trace.table import fmt_ops

SOURCE = "cnncost train"
LOSS = "(loss)"
MACS = ("forward_macs", "grad_input_macs", "grad_weight_macs", "recompute_macs", "optimizer_macs")
ADDS = ("bias_adds", "grad_bias_adds")
# The columns that scale with the images of a step (the optimizer's MACs are per step, not per image).
STEP_PHASES = ("forward_macs", "grad_input_macs", "grad_weight_macs", "recompute_macs")
COLUMNS = ("name", "module", "kind", "category", "params", *MACS, "train_macs", *ADDS)
# Ops that only mark or allocate (the optimizer's profiler markers, autograd's gradient buffers).
MARKERS = frozenset({"_record_function_enter_new", "_record_function_exit", "_record_function_enter",
                     "new_empty_strided"})
PART_COLUMN = {"grad_input": "grad_input_macs", "grad_weight": "grad_weight_macs", "grad_bias": "grad_bias_adds"}


class TrainCounter(TorchDispatchMode):
    """Books every op of a training step (forward, loss, backward, optimizer) in its owning module's row; composes
    the module call stack, the parameter ledger and the costs, as the forward counter does."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
        super().__init__()
        self.optimizer = optimizer
        self.modules = ModuleStack(model, on_enter=self.entered, on_leave=self.left)
        self.ledger = ParamLedger(model)
        self.costs = Costs()
        self.functions = FunctionMode(self.book)
        self.classes = {n: type(m).__name__ for n, m in model.named_modules()}
        self.spans: list[tuple[int, int, str]] = []  # (first, end) autograd sequence numbers per module call
        self.open: list[int] = []
        self.node_owner: dict[int, str] | None = None
        self.phase = "idle"  # idle -> forward -> loss -> (backward, told by autograd) -> optimizer
        self.state_owner: dict[int, tuple[str, torch.Tensor]] = {}
        self.last_owner = ""
        self.acc: dict[tuple[str, str], dict] = {}  # (module, '' or a foreign category) -> row
        self.core_modules: set[str] = set()
        self.by_category: dict[tuple[str, str], int] = {}

    def active(self):
        """A context in which the module stack, the function mode, the optimizer's step hook and this dispatch
        mode all track."""
        return tracking(self, self.modules, self.functions, OptimizerHook(self.optimizer, self.start_optimizer))

    # -- where an op belongs ------------------------------------------------------------------------------

    def entered(self, call: Call) -> None:
        """A module call began: remember the first autograd sequence number it may create."""
        if self.phase == "idle":
            self.phase = "forward"
        self.open.append(len(self.spans))
        self.spans.append((torch._C._autograd._get_sequence_nr(), -1, call.path))

    def left(self, call: Call) -> None:
        """A module call ended: close its range of sequence numbers."""
        index = self.open.pop()
        first, _, name = self.spans[index]
        self.spans[index] = (first, torch._C._autograd._get_sequence_nr(), name)
        if self.node_owner is not None:  # re-run in backward (reentrant checkpointing): its nodes are new
            for seq in range(first, self.spans[index][1]):
                self.node_owner.setdefault(seq, name)
        if not self.open:
            self.phase = "loss"

    def owner_of_node(self, node) -> str:
        """The module whose forward created an autograd node (innermost call); (loss) after the model's forward."""
        if self.node_owner is None:
            self.node_owner = {}
            for first, end, name in self.spans:  # pre-order: an inner call overwrites its parent
                self.node_owner.update(dict.fromkeys(range(first, end), name))
        if node is None:
            return LOSS
        variable = getattr(node, "variable", None)  # AccumulateGrad: the parameter's own module
        if isinstance(variable, torch.Tensor):
            return self.ledger.module_of.get(id(variable), "")
        return self.node_owner.get(node._sequence_nr(), LOSS)

    def start_optimizer(self, *_) -> None:
        """Optimizer step pre-hook: every parameter, gradient and state tensor knows its module."""
        self.phase = "optimizer"
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                owner = self.ledger.module_of.get(id(p), "")
                tensors = [p, p.grad, *self.optimizer.state.get(p, {}).values()]
                for t in tensors:
                    if isinstance(t, torch.Tensor):
                        self.state_owner[id(t)] = (owner, t)

    def optimizer_owner(self, args: tuple, out) -> str:
        """The module whose parameter an optimizer op updates; its outputs inherit that owner."""
        owner = next((self.state_owner[id(t)][0] for t in tree_leaves(args)
                      if isinstance(t, torch.Tensor) and id(t) in self.state_owner), self.last_owner)
        self.last_owner = owner
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.state_owner[id(t)] = (owner, t)
        return owner

    # -- booking ---------------------------------------------------------------------------------------------

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._overloadpacket.__name__ in MARKERS:
            return func(*args, **(kwargs or {}))
        out = backward_output(func, args, kwargs, self.phase == "optimizer")
        fast = out is not None
        if not fast:
            out = run_op(func, args, kwargs)
            if self.functions.muted:
                return out
        layer, booked = (layer_of(func, args, kwargs, out), True) if fast else \
            layer_seen(func, args, kwargs, out, self.ledger)
        if booked:
            self.book(layer, args, out, func)
        return out

    def book(self, layer, args: tuple, out, func) -> None:
        """Add one op's cost to its module's row, in the column of its phase (and its parts' columns)."""
        c = self.costs.of_op(layer, op_label(func), args, out)
        node = torch._C._current_autograd_node()
        if node is not None or torch._C._current_graph_task_id() != -1:
            name = self.owner_of_node(node)
            if torch.is_grad_enabled():  # checkpointing re-runs a forward in backward, recording its graph
                self.add(self.modules.current.path if self.modules.inside() else name, "recompute_macs", c,
                         forward=True)
            else:
                self.add_backward(name, c, args, out)
        elif self.phase == "optimizer":
            self.add(self.optimizer_owner(args, out), "optimizer_macs", c)
        else:
            name = self.modules.current.path if self.phase == "forward" else LOSS
            for part in [p for _, p in c.parts] if c.kind in COMPOSITES else [c]:  # attention: products = linear
                self.add(name, "forward_macs", part, forward=True)

    def add_backward(self, name: str, c: Cost, args: tuple, out) -> None:
        """A backward op: its parts in their columns, else a matrix product or reduction classified by shapes."""
        if c.parts and all(part in PART_COLUMN for part, _ in c.parts):
            for part, p in c.parts:
                self.add(name, PART_COLUMN[part], p, foreign=True)
            return
        column = self.gradient_column(name, c, args, out)
        bias = column == "grad_bias_adds"
        self.add(name, column, c, c.macs + c.bias_adds if bias else None, foreign=not bias)

    def gradient_column(self, name: str, c: Cost, args: tuple, out) -> str:
        """grad_weight_macs for an op that reads no parameter and yields one of the module's parameter shapes,
        grad_bias_adds when that parameter is a bias (the sum of dY), else grad_input_macs. Where a weight and a
        bias have that shape, a matrix product makes the weight's gradient and any other reduction the bias's."""
        produced = shape(first_tensor(out))
        reads_param = self.ledger.reads_any(args)
        squeezed = tuple(s for s in produced if s != 1)
        matches = {"bias" in leaf for leaf, s in self.ledger.shapes.get(name, [])
                   if produced in (s, s[::-1]) or squeezed == tuple(d for d in s if d != 1)}
        if reads_param or not matches:
            return "grad_input_macs"
        is_bias = matches == {True} or (len(matches) == 2 and c.category not in CORE)
        return "grad_bias_adds" if is_bias else "grad_weight_macs"

    def row(self, name: str, category: str, foreign: bool) -> dict:
        """A module's row; a conv or linear module's backward ops of another category (the adds of gradients
        meeting at a fork) get a row of their own, so its row holds exactly its forward, dX and dW."""
        key = (name, category if foreign and name in self.core_modules and category not in CORE else "")
        row = self.acc.get(key)
        if row is None:
            row = self.acc[key] = {"name": LOSS if name == LOSS else root_name(name),
                                   "module": self.classes.get(name, ""), "kinds": {}, "backward_kinds": {},
                                   **dict.fromkeys(MACS + ADDS, 0)}
        return row

    def add(self, name: str, column: str, c: Cost, amount: int | None = None, forward: bool = False,
            foreign: bool = False) -> None:
        """Book a cost's MACs (in grad_bias_adds: its bias adds, or `amount`) in its module's row (see row) and in
        the category totals."""
        if forward and c.category in CORE:
            self.core_modules.add(name)
        row = self.row(name, c.category, foreign)
        if amount is None:
            amount = c.bias_adds if column == "grad_bias_adds" else c.macs
        row[column] += amount
        if forward:
            row["bias_adds"] += c.bias_adds
            row["kinds"][(c.kind, c.category)] = row["kinds"].get((c.kind, c.category), 0) + c.macs
        else:
            row["backward_kinds"].setdefault((c.kind, c.category), 0)
            if column != "grad_bias_adds":
                row["grad_bias_adds"] += c.bias_adds
        key = (column, c.category)
        self.by_category[key] = self.by_category.get(key, 0) + amount


class OptimizerHook:
    """An optimizer step pre-hook, registered while the context is entered."""

    def __init__(self, optimizer: torch.optim.Optimizer, hook):
        self.optimizer, self.hook, self.handle = optimizer, hook, None

    def __enter__(self):
        self.handle = self.optimizer.register_step_pre_hook(self.hook)

    def __exit__(self, *exc):
        self.handle.remove()


@dataclass
class TrainResult:
    """Per-module MACs of one training step: forward, grad-input, grad-weight, optimizer (and bias adds)."""

    model: str
    input_shape: tuple
    optimizer: str
    dtype: str
    input_grad: bool
    table: pd.DataFrame
    by_category: pd.DataFrame
    unsupported: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    device: str = "meta"  # where the step ran: meta, or cpu (the fallback)

    def totals(self) -> dict[str, int]:
        """Whole-step sums of the rows (train_macs = forward + grad-input + grad-weight + optimizer)."""
        return {c: int(self.table[c].sum()) for c in COLUMNS[4:]}

    def core(self, column: str) -> int:
        """Conv + linear MACs of one column (forward_macs, grad_input_macs, ...)."""
        return int(self.by_category.loc[list(CORE), column].sum())


def main_kind(row: dict) -> tuple[str, str]:
    """The forward kind (and category) with the most MACs in a row; else its first backward op's."""
    kinds = row["kinds"] or row["backward_kinds"]
    return max(kinds, key=lambda k: kinds[k]) if kinds else ("", "other")


def result_table(tracer: TrainCounter, model: torch.nn.Module) -> pd.DataFrame:
    """One row per module that ran an op (the loss last), parameters per module, integers exact."""
    params: dict[str, int] = {}
    for pname, p in model.named_parameters():
        owner = pname.rpartition(".")[0]
        params[owner] = params.get(owner, 0) + p.numel()
    rows, order = [], {}
    for name, _ in tracer.acc:
        order.setdefault(name, len(order))
    for (name, foreign), acc in sorted(tracer.acc.items(), key=lambda i: (i[0][0] == LOSS, order[i[0][0]], i[0][1])):
        kind, category = main_kind(acc)
        row = {"name": acc["name"], "module": acc["module"], "kind": kind, "category": category,
               "params": 0 if foreign else params.get(name, 0), **{c: acc[c] for c in MACS + ADDS}}
        row["train_macs"] = sum(acc[c] for c in MACS)
        rows.append(row)
    ints = set(COLUMNS[4:])  # built column by column from arrays: a fifth of the time of records + astype
    return pd.DataFrame({c: np.array([r[c] for r in rows], dtype=np.int64 if c in ints else object)
                         for c in COLUMNS})


def category_table(tracer: TrainCounter) -> pd.DataFrame:
    """MACs (bias adds for grad_bias_adds) per category and column; every category a row, zeros included."""
    from cnncost.formulas import CATEGORIES
    columns = [*MACS, "grad_bias_adds"]
    data = {c: np.array([tracer.by_category.get((c, cat), 0) for cat in CATEGORIES], dtype=np.int64) for c in columns}
    return pd.DataFrame(data, index=list(CATEGORIES))


def check_args(optimizer: str, dtype: str) -> None:
    """Optimizer and dtype must be known: one line otherwise."""
    if optimizer not in OPTIMIZERS:
        raise CnnCostError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if dtype not in AUTOCAST:
        raise CnnCostError(f"--dtype must be one of {', '.join(AUTOCAST)}, got {dtype!r}")


def trace_training(model: torch.nn.Module, inputs, targets: torch.Tensor, optimizer: str = "sgd",
                   dtype: str = "fp32", input_grad: bool = False, name: str = "model",
                   device: str = "meta") -> TrainResult:
    """Trace one steady-state training step of a model (forward, cross-entropy, backward, optimizer) per module."""
    check_args(optimizer, dtype)
    inputs = as_inputs(inputs, input_grad)
    opt = ready_optimizer(model, optimizer)
    counter = TrainCounter(model, opt)
    with counter.active():
        training_step(model, inputs, targets, opt, dtype, device)
    shape_ = inputs.shapes()[0] if inputs.tensors() else ()
    result = TrainResult(name, shape_, optimizer, dtype, input_grad, result_table(counter, model),
                         category_table(counter), dict(counter.costs.unsupported))
    if counter.costs.unsupported:
        result.notes.append(f"ops with no formula, counted as 0: {fmt_ops(counter.costs.unsupported)}")
    return result


# Models whose loss needs more than class ids (the step's cross-entropy takes class ids, per image or per pixel).
UNTRAINABLE = {"images": "detection models train on boxes and labels per image (targets cnncost does not make); "
                         "trace its forward with `cnncost trace`",
               "image_pair": "optical flow trains on an end-point error against flow targets, not a cross-entropy; "
                             "trace its forward with `cnncost trace`"}
SINGLE_VALUE_HINT = " (a batch norm over one value per channel cannot train: use --batch 2 or more)"


def batch_of(inputs, batch: int | None) -> int:
    """The batch of a step's inputs: the first input tensor's first dim (--input and example inputs set it)."""
    shapes = inputs.shapes()
    return shapes[0][0] if shapes and shapes[0] else batch or 1


def train_source(source, batch: int | None = None, size: int | None = None, optimizer: str = "sgd",
                 dtype: str = "fp32", input_grad: bool = False, device: str = "meta") -> TrainResult:
    """Trace a model source's training step on the meta device at an input size and batch; if it fails there (a
    tensor made on the CPU inside forward, an op with no meta kernel), on the CPU instead, with a notice."""
    check_args(optimizer, dtype)
    if source.layout in UNTRAINABLE:
        raise CnnCostError(f"{source.name}: cannot trace a training step: {UNTRAINABLE[source.layout]}")

    def run(where: str) -> TrainResult:
        model, example = source.instantiate(where)
        x = source.inputs(batch, size, where, example)
        return trace_training(model, x, targets_for(batch_of(x, batch), where), optimizer, dtype, input_grad,
                              source.name, where)
    return with_cpu_fallback(source, batch, size, device, run, "training step", "traced", single_value_hint)


def single_value_hint(error: Exception) -> str:
    """The advice for a batch norm over one value per channel, which no device can train (no CPU fallback)."""
    return SINGLE_VALUE_HINT if "more than 1 value per channel" in str(error) else ""
