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
from cnncost.trace.costing import Costs, OpSequence, layer_seen, op_label, run_op, tracking
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


class Booking:
    """The rows of one op a training step books: a forward op's (one per part of a composite), the loss's, or the
    rows an op with no forward op of its own lands in; the parameters it read, to tell its gradients apart."""

    def __init__(self, index: int, name: str, cls: str, call: int, kind: str = ""):
        self.index, self.name, self.cls, self.call, self.kind = index, name, cls, call, kind
        self.rows: list[dict] = []
        self.reads: dict[int, tuple[str, tuple, str]] = {}  # parameter id -> (own name, shape, owning module)

    def row(self, kind: str, category: str, foreign: bool = False) -> dict:
        """A new row of this booking."""
        row = {"name": self.name, "module": self.cls, "kind": kind, "category": category, "params": 0,
               **dict.fromkeys(MACS + ADDS, 0), "order": (self.index, len(self.rows) + (1000 if foreign else 0))}
        self.rows.append(row)
        return row

    @property
    def composite(self) -> bool:
        """Whether the op is a composite layer booked as parts (attention): its rows are named module.part."""
        return len(self.rows) > 1 and any(r["name"] != self.name for r in self.rows)

    def of_category(self, category: str, kind: str) -> dict:
        """The row a backward op of a category lands in: the forward row of that category, else (and for a
        composite's parts, whose backward runs as one) a row of its own per category under the op call's name,
        so that every row holds one category."""
        own = [r for r in self.rows if r["order"][1] >= 1000 or not self.composite]
        found = next((r for r in own if r["category"] == category), None)
        if found is not None:
            return found
        row = self.row(f"{self.kind}_backward" if self.composite else kind, category, foreign=True)
        row["name"] = self.name
        return row

    def owning(self, module: str) -> dict:
        """The row of the part a parameter's module names (a composite's out_proj), else the first row."""
        leaf = module.rpartition(".")[2]
        return next((r for r in self.rows if r["name"].rpartition(".")[2] == leaf and r["name"] != self.name),
                    self.rows[0])


class TrainCounter(TorchDispatchMode):
    """Books every op of a training step (forward, loss, backward, optimizer) in the row of the op call it
    belongs to; composes the module call stack, the parameter ledger and the costs, as the forward counter does."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, sequence: OpSequence | None = None):
        super().__init__()
        self.optimizer = optimizer
        self.sequence = sequence  # the ops in order with their rows, when a profile is joined to this step
        self.modules = ModuleStack(model, on_enter=self.entered, on_leave=self.left)
        self.ledger = ParamLedger(model)
        self.costs = Costs()
        self.functions = FunctionMode(self.book)
        self.bookings: list[Booking] = []
        self.node_owner: dict[int, Booking] = {}  # autograd sequence number -> the booking whose op made the node
        self.mark = torch._C._autograd._get_sequence_nr()  # nodes from here on are not yet owned
        self.first_reader: dict[int, Booking] = {}  # parameter id -> the booking that read it first
        self.by_kind: dict[tuple[str, str], dict] = {}  # (module path, kind) -> first forward row (recomputation)
        self.phase = "idle"  # idle -> forward -> loss -> (backward, told by autograd) -> optimizer
        self.state_owner: dict[int, tuple[dict, torch.Tensor]] = {}  # tensor id -> (the row it updates, tensor)
        self.last_owner: dict | None = None
        self.pending: list[int] = []  # nodes free ops made, for the next op of their module call

    def active(self):
        """A context in which the module stack, the function mode, the optimizer's step hook and this dispatch
        mode all track."""
        return tracking(self, self.modules, self.functions, OptimizerHook(self.optimizer, self.start_optimizer))

    # -- where an op belongs ------------------------------------------------------------------------------

    def entered(self, call: Call) -> None:
        """A module call began: the forward is under way."""
        if self.phase == "idle":
            self.phase = "forward"

    def left(self, call: Call) -> None:
        """A module call ended: nodes its free ops made with no op after them belong to its last op (or a booking
        of their own); when the model's own call ends, the loss follows."""
        if self.pending:
            last = self.bookings[-1] if self.bookings and self.bookings[-1].call == call.index else None
            owner = last or self.new_booking(call)
            self.node_owner.update(dict.fromkeys(self.pending, owner))
            self.pending.clear()
        if not self.modules.inside() and self.phase == "forward":
            self.phase = "loss"

    def new_booking(self, call: Call | None = None, kind: str = "") -> Booking:
        """A booking for the op being seen, named for the current module call ((loss) after the forward)."""
        call = call or self.modules.current
        name = root_name(call.path) if self.phase in ("idle", "forward") or self.modules.inside() else LOSS
        booking = Booking(len(self.bookings), name, call.cls if name != LOSS else "", call.index, kind)
        self.bookings.append(booking)
        return booking

    def new_nodes(self) -> list[int]:
        """The autograd nodes made since the last op (a node is made just before its op runs)."""
        now = torch._C._autograd._get_sequence_nr()
        made, self.mark = list(range(self.mark, now)), now
        return made

    def own_nodes(self, booking: Booking) -> None:
        """This op's nodes, and those of the free ops before it in its module call, are the booking's."""
        self.node_owner.update(dict.fromkeys([*self.pending, *self.new_nodes()], booking))
        self.pending.clear()

    def owner_of_node(self, node) -> Booking:
        """The booking whose op made an autograd node; a parameter's gradient accumulation belongs to the op that
        first read it; the graph's root and unknown nodes to the loss."""
        variable = getattr(node, "variable", None) if node is not None else None
        if isinstance(variable, torch.Tensor) and id(variable) in self.first_reader:
            return self.first_reader[id(variable)]
        owner = self.node_owner.get(node._sequence_nr()) if node is not None else None
        return owner if owner is not None else self.loss_booking()

    def loss_booking(self) -> Booking:
        """The first booking of the loss (a new one if the loss ran no op of its own)."""
        booking = next((b for b in self.bookings if b.name == LOSS), None)
        if booking is None:
            booking = Booking(len(self.bookings), LOSS, "")
            self.bookings.append(booking)
        return booking

    def start_optimizer(self, *_) -> None:
        """Optimizer step pre-hook: every parameter, gradient and state tensor knows the op that read it."""
        self.phase = "optimizer"
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                reader = self.first_reader.get(id(p))
                owner = reader.owning(self.ledger.module_of.get(id(p), "")) if reader and reader.rows else \
                    self.loss_booking().of_category("other", "optimizer")
                for t in [p, p.grad, *self.optimizer.state.get(p, {}).values()]:
                    if isinstance(t, torch.Tensor):
                        self.state_owner[id(t)] = (owner, t)

    def optimizer_owner(self, args: tuple, out) -> dict:
        """The row whose parameter an optimizer op updates; its outputs inherit that owner."""
        owner = next((self.state_owner[id(t)][0] for t in tree_leaves(args)
                      if isinstance(t, torch.Tensor) and id(t) in self.state_owner), self.last_owner)
        owner = owner or self.loss_booking().of_category("other", "optimizer")
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
        if self.sequence is not None:
            self.sequence.seen(func)
        if not fast and self.functions.muted:
            return out
        layer, booked = (layer_of(func, args, kwargs, out), True) if fast else \
            layer_seen(func, args, kwargs, out, self.ledger)
        if booked:
            self.book(layer, args, out, func)
        elif torch.is_grad_enabled():  # a free op (a view): its nodes go with the next op of its module call
            self.pending += self.new_nodes()
        return out

    def book(self, layer, args: tuple, out, func) -> None:
        """One op's cost in the row of the op call it belongs to, in the column of its phase (and its parts')."""
        c = self.costs.of_op(layer, op_label(func), args, out)
        node = torch._C._current_autograd_node()
        if node is not None or torch._C._current_graph_task_id() != -1:
            if torch.is_grad_enabled():  # checkpointing re-runs a forward in backward, recording its graph
                row = self.recomputed(c)
                row["recompute_macs"] += c.macs
                self.own_nodes(self.bookings[row["order"][0]])
            else:
                row = self.add_backward(self.owner_of_node(node), c, args, out)
        elif self.phase == "optimizer":
            row = self.optimizer_owner(args, out)
            row["optimizer_macs"] += c.macs
        else:
            row = self.add_forward(c, args)
        if self.sequence is not None:
            self.sequence.booked(row)

    def add_forward(self, c: Cost, args: tuple) -> dict:
        """A forward (or loss) op: a booking with one row per part of a composite, the parameters it reads first
        on their own part's row (out_proj's on out_proj), the nodes it made."""
        parts = c.parts if c.kind in COMPOSITES else (("", c),)
        booking = self.new_booking(kind=c.kind)
        for suffix, part in parts:
            row = booking.row(part.kind, part.category)
            if suffix:
                row["name"] = f"{booking.name}.{suffix}" if booking.name != "(model)" else suffix
            row["forward_macs"] += part.macs
            row["bias_adds"] += part.bias_adds
            self.by_kind.setdefault((booking.name, part.kind), row)
        for t in tree_leaves(args):
            key = self.ledger.key(t) if isinstance(t, torch.Tensor) else None
            if key is not None and self.ledger.owners[key][0]:
                booking.reads[key] = (self.ledger.names.get(key, ""), tuple(self.ledger.owners[key][1].shape),
                                      self.ledger.module_of.get(key, ""))
                self.first_reader.setdefault(key, booking)
        for owner, is_param, n in self.ledger.first_reads(args):
            if is_param:
                booking.owning(owner)["params"] += n
        self.own_nodes(booking)
        return booking.rows[0]

    def recomputed(self, c: Cost) -> dict:
        """The forward row a recomputed op repeats: the first of its kind in the re-entered module call."""
        name = root_name(self.modules.current.path) if self.modules.inside() else LOSS
        row = self.by_kind.get((name, c.kind))
        if row is None:
            booking = self.new_booking()
            row = self.by_kind[(name, c.kind)] = booking.row(c.kind, c.category)
        return row

    def add_backward(self, owner: Booking, c: Cost, args: tuple, out) -> dict:
        """A backward op in its forward op's rows: its parts in their columns, else a matrix product or
        reduction classified by the parameters the forward op read; the (first) row it went to."""
        if c.parts and all(part in PART_COLUMN for part, _ in c.parts):
            rows = []
            for part, p in c.parts:
                row = owner.of_category(p.category, p.kind)
                row[PART_COLUMN[part]] += p.bias_adds if part == "grad_bias" else p.macs
                if part != "grad_bias":
                    row["grad_bias_adds"] += p.bias_adds
                rows.append(row)
            return rows[0]
        column, module = self.gradient_column(owner, c, args, out)
        if column != "grad_input_macs":  # a parameter's gradient, on the row that owns the parameter (a weight's
            # of another category, as the adds accumulating an RNN's weight gradient over its steps, on a row of
            # that category; a bias's sum of dY stays with its layer)
            row = owner.owning(module) if owner.rows else owner.of_category(c.category, c.kind)
            if column == "grad_weight_macs" and row["category"] != c.category:
                row = owner.of_category(c.category, c.kind)
            row[column] += c.macs + c.bias_adds if column == "grad_bias_adds" else c.macs
            return row
        row = owner.of_category(c.category, c.kind)
        row[column] += c.macs
        row["grad_bias_adds"] += c.bias_adds
        return row

    def gradient_column(self, owner: Booking, c: Cost, args: tuple, out) -> tuple[str, str]:
        """(column, module of the parameter): grad_weight_macs for an op that reads no parameter and yields the
        shape of a parameter its forward op read, grad_bias_adds when that parameter is a bias (the sum of dY),
        else grad_input_macs. Where a weight and a bias have that shape, a matrix product makes the weight's
        gradient and any other reduction the bias's."""
        produced = shape(first_tensor(out))
        squeezed = tuple(s for s in produced if s != 1)
        matches = {("bias" in leaf, module) for leaf, s, module in owner.reads.values()
                   if produced in (s, s[::-1]) or squeezed == tuple(d for d in s if d != 1)}
        if self.ledger.reads_any(args) or not matches:
            return "grad_input_macs", ""
        biases = {bias for bias, _ in matches}
        is_bias = biases == {True} or (len(biases) == 2 and c.category not in CORE)
        module = next(m for bias, m in matches if bias == is_bias)
        return ("grad_bias_adds" if is_bias else "grad_weight_macs"), module


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
    assumptions: dict = field(default_factory=dict)  # counts the cost depends on

    def totals(self) -> dict[str, int]:
        """Whole-step sums of the rows (train_macs = forward + grad-input + grad-weight + optimizer)."""
        return {c: int(self.table[c].sum()) for c in COLUMNS[4:]}

    def core(self, column: str) -> int:
        """Conv + linear MACs of one column (forward_macs, grad_input_macs, ...)."""
        return int(self.by_category.loc[list(CORE), column].sum())


def table_rows(tracer: TrainCounter) -> list[dict]:
    """The step's rows in table order: call order, the loss last."""
    return sorted((r for b in tracer.bookings for r in b.rows), key=lambda r: (r["name"] == LOSS, r["order"]))


def result_table(tracer: TrainCounter, model: torch.nn.Module | None = None) -> pd.DataFrame:
    """One row per op call (and per part, and per category of backward ops landing in it), in call order, the
    loss last; integers exact."""
    rows = table_rows(tracer)
    for row in rows:
        row["train_macs"] = sum(row[c] for c in MACS)
    ints = set(COLUMNS[4:])  # built column by column from arrays: a fifth of the time of records + astype
    return pd.DataFrame({c: np.array([r[c] for r in rows], dtype=np.int64 if c in ints else object)
                         for c in COLUMNS})


def category_table(tracer: TrainCounter, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """MACs (bias adds for grad_bias_adds) per category and column, the sums of the rows; every category a row,
    zeros included."""
    from cnncost.formulas import CATEGORIES
    table = result_table(tracer) if table is None else table
    columns = [*MACS, "grad_bias_adds"]
    sums = table.groupby("category")[columns].sum()
    return sums.reindex(list(CATEGORIES), fill_value=0).astype(np.int64)


def check_args(optimizer: str, dtype: str) -> None:
    """Optimizer and dtype must be known: one line otherwise."""
    if optimizer not in OPTIMIZERS:
        raise CnnCostError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if dtype not in AUTOCAST:
        raise CnnCostError(f"--dtype must be one of {', '.join(AUTOCAST)}, got {dtype!r}")


def trace_training(model: torch.nn.Module, inputs, targets: torch.Tensor, optimizer: str = "sgd",
                   dtype: str = "fp32", input_grad: bool = False, name: str = "model",
                   device: str = "meta", sequence: OpSequence | None = None, opt=None) -> TrainResult:
    """Trace one steady-state training step of a model (forward, cross-entropy, backward, optimizer) per op call
    (with `sequence`, the ops seen in order with their rows' positions in the table; `opt`: an optimizer ready
    for a steady-state step, else one made)."""
    check_args(optimizer, dtype)
    inputs = as_inputs(inputs, input_grad)
    opt = opt or ready_optimizer(model, optimizer)
    counter = TrainCounter(model, opt, sequence)
    with counter.active():
        training_step(model, inputs, targets, opt, dtype, device)
    shape_ = inputs.shapes()[0] if inputs.tensors() else ()
    table = result_table(counter)
    if sequence is not None:  # rows by their position in the table
        position = {id(r): i for i, r in enumerate(table_rows(counter))}
        sequence.ops = [[op, None if row is None else position.get(id(row))] for op, row in sequence.ops]
    result = TrainResult(name, shape_, optimizer, dtype, input_grad, table, category_table(counter, table),
                         dict(counter.costs.unsupported))
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
