"""Our own counter: every aten op of a real nn.Module, seen under a dispatch mode on the meta device.

Each op is attributed to the innermost module being called (``(model)`` for the root) and costed by the
same formulas as the analytic specs, with the hyper-parameters read from the op's own arguments. So
``F.conv2d``, ``x + y``, ``x * s`` and ``torch.cat`` count exactly like nn.Conv2d and friends. Rows are one
per (module call, layer kind). Parameters are counted once per tensor, at the first op that reads them.
Ops with no formula become rows of their own and are listed in ``Result.unsupported``; never silently zero.
"""
from __future__ import annotations

import dis
import sys
from typing import Any, Callable

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from cnncost.errors import CnnCostError
from cnncost.formulas import ACTIVATIONS, Cost, cost, fmt_shape
from cnncost.result import SUMMED, Result, cost_row, frame
from cnncost.trace.kinds import category, root_name, stage_of
from cnncost.trace.models import Inputs, ModelSource, one_line
from cnncost.trace.ops import FREE, FUNCTIONS, Layer, bound_args, first_tensor, layer_of, load_families, op_name, shape
from cnncost.trace.ops_math import VIEWS

load_families()

SOURCE = "cnncost trace"


SAME_SHAPE = frozenset("""relu silu sigmoid gelu hardswish hardsigmoid tanh hardtanh leaky_relu elu mish softplus neg
exp sqrt rsqrt abs reciprocal""".split())
ARITHMETIC = frozenset("add sub mul div".split())
BATCH_NORMS = frozenset(["native_batch_norm", "_native_batch_norm_legit_no_training"])
# Composite layers booked as their parts, each in its own kind's row (attention: the two products in a
# linear row, the scale and softmax in theirs), so that core MACs stay conv + linear.
COMPOSITES = frozenset(["scaled_dot_product_attention", "multi_head_attention", "rnn"])  # rnn: LSTM/GRU/RNN


def shortcut(func, args: tuple, kwargs: dict | None):
    """On the meta device, the output of an op whose shape is plain (in-place ops, activations, batch norm,
    elementwise arithmetic on equal layouts, matrix products, layer norm, softmax) without running PyTorch's
    Python meta kernels, which dominate tracing time; None for every other op."""
    x = args[0] if args else None
    if kwargs or not isinstance(x, torch.Tensor) or not x.is_meta:
        return None
    packet, name = func._overloadpacket.__name__, op_name(func)
    if name in SAME_SHAPE or name in ARITHMETIC:
        if packet != name:  # in place: the output is the input
            return x
        if name in ARITHMETIC:
            return empty_like(x) if same_layout(x, args[1]) else None
        return empty_like(x) if x.is_floating_point() or name in ACTIVATIONS else None
    if packet in BATCH_NORMS:
        return empty_like(x), *batch_norm_stats(packet, x)
    if packet in FRESH:
        return FRESH[packet](*args) if same_dtype(args) else None
    plain = PLAIN_SHAPES.get(packet)
    return plain(*args) if plain and same_dtype(args) and x.is_contiguous() else None


def empty_like(x: torch.Tensor) -> torch.Tensor:
    """torch.empty_like(x) on meta: new_empty for a contiguous x (empty_like runs a Python reference there, a
    fifth of a traced training step's time), empty_like itself (strides kept) otherwise."""
    return x.new_empty(x.shape) if x.is_contiguous() else torch.empty_like(x)


def same_layout(x: torch.Tensor, other: Any) -> bool:
    """x op other has x's shape, dtype and strides: x is floating and other a real number or laid out like x."""
    if not x.is_floating_point():
        return False
    if isinstance(other, torch.Tensor):
        return other.shape == x.shape and other.dtype == x.dtype and other.stride() == x.stride()
    return isinstance(other, (int, float))


def same_dtype(args: tuple) -> bool:
    """Every (non-bool) tensor argument has the first one's dtype."""
    ts = [a for a in args if isinstance(a, torch.Tensor) and a.dtype != torch.bool]
    return all(t.dtype == ts[0].dtype for t in ts)


def layer_norm_outputs(x, normalized_shape, *_):
    """native_layer_norm: the output, and mean and rstd of shape (leading dims, 1, ...) in float32 for half inputs."""
    stats = (*x.shape[:x.dim() - len(normalized_shape)], *[1] * len(normalized_shape))
    dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    return x.new_empty(x.shape), x.new_empty(stats, dtype=dtype), x.new_empty(stats, dtype=dtype)


# Matrix products and layer norm: fresh contiguous outputs of the inputs' dtype, whatever their strides.
FRESH: dict[str, Callable] = {
    "native_layer_norm": layer_norm_outputs,
    "mm": lambda a, b: a.new_empty((a.shape[0], b.shape[1])),
    "addmm": lambda c, a, b, *_: a.new_empty((a.shape[0], b.shape[1])),
    "bmm": lambda a, b: a.new_empty((a.shape[0], a.shape[1], b.shape[2])),
}
# Ops whose meta output is contiguous, of the input's dtype, for a contiguous input: packet -> output.
PLAIN_SHAPES: dict[str, Callable] = {
    "_softmax": lambda x, dim, half_to_float: None if half_to_float else x.new_empty(x.shape),
    "_safe_softmax": lambda x, dim, dtype=None: None if dtype not in (None, x.dtype) else x.new_empty(x.shape),
    "masked_fill": lambda x, mask, value: x.new_empty(x.shape),
}


def batch_norm_stats(packet: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(H4a, training) save_mean and save_invstd as the meta kernel makes them: (C,) float32 for half inputs, and
    (0,) only for _native_batch_norm_legit_no_training; the backward of a training step reads them."""
    if packet != "native_batch_norm" or x.dim() < 2:
        return x.new_empty((0,)), x.new_empty((0,))
    dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    return x.new_empty((x.shape[1],), dtype=dtype), x.new_empty((x.shape[1],), dtype=dtype)


# Torch functions that other counters patch by name (ptflops: torch.matmul/mm/bmm/addmm/baddbmm and
# Tensor.matmul/mm/bmm/addmm): the ops of a call of one get a row of their own whose op column names it, so that
# verify tells x.matmul(y), which ptflops counts, from F.linear and x @ y (not called by name), which run as the
# same aten ops.
ORIGINS = {getattr(owner, fn): f"{label}.{fn}" for owner, label in ((torch, "torch"), (torch.Tensor, "Tensor"))
           for fn in ("matmul", "mm", "bmm", "addmm", "baddbmm") if hasattr(owner, fn)}


def by_operator() -> bool:
    """Whether the tensor method being dispatched was reached by an operator (x @ y runs as Tensor.matmul
    too), not called by name: CPython's caller frame (above __torch_function__) stands at a BINARY_OP."""
    try:
        frame = sys._getframe(2)
        return dis.opname[frame.f_code.co_code[frame.f_lasti]] in ("BINARY_OP", "BINARY_MATRIX_MULTIPLY")
    except (ValueError, IndexError):  # no such frame, or no instruction there: taken as a call by name
        return False


class Functions(TorchFunctionMode):
    """Books a call of a torch function in ops.FUNCTIONS as one layer, its aten ops muted: same rows anywhere."""

    def __init__(self, tracer: "Tracer"):
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        handler = FUNCTIONS.get(func)
        if handler is None or self.tracer.muted:
            origin = ORIGINS.get(func)
            if origin is None or self.tracer.origin or (func is torch.Tensor.matmul and by_operator()):
                return func(*args, **(kwargs or {}))
            self.tracer.origin = origin  # the ops inside are booked in a row naming it
            try:
                return func(*args, **(kwargs or {}))
            finally:
                self.tracer.origin = ""
        self.tracer.muted = True
        try:
            out = func(*args, **(kwargs or {}))
        finally:
            self.tracer.muted = False
        self.tracer.book(handler(bound_args(func, args, kwargs), out), (args, kwargs), out, func)
        return out


class Tracer(TorchDispatchMode):
    """Collects one row per (module call, layer kind); module hooks keep a stack of the calls in progress."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.stack: list[tuple[int, str, str]] = [(0, "", type(model).__name__)]
        self.calls = 0
        self.rows: dict[tuple[int, str, str], dict] = {}  # (module call, kind, ORIGINS function or '') -> row
        self.unsupported: dict[str, int] = {}
        self.owners = {id(t): (True, t) for t in model.parameters()}
        self.owners.update({id(t): (False, t) for t in model.buffers()})
        self.aliases: dict[int, tuple[int, torch.Tensor]] = {}
        self.seen: set[int] = set()
        self.muted = False  # inside a call booked whole by Functions: its aten ops are not booked
        self.origin = ""  # inside a call of a function in ORIGINS: its name
        self.functions = Functions(self)

    def __enter__(self):
        self.functions.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self.functions.__exit__(*exc)

    def enter(self, name: str, module: torch.nn.Module) -> Callable:
        """A forward pre-hook that pushes a new call of module `name`."""
        def hook(*_):
            self.calls += 1
            self.stack.append((self.calls, name, type(module).__name__))
        return hook

    def leave(self, *_) -> None:
        """A forward hook that pops the module call."""
        self.stack.pop()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = shortcut(func, args, kwargs)
        if out is None:
            out = func(*args, **(kwargs or {}))
        if self.muted:
            return out
        name = op_name(func)
        if name in FREE:
            self.alias(args, out)
            layer = VIEWS[name](args, out) if name in VIEWS else None
            if layer:
                self.book(layer, args, out, func)
        else:
            self.book(layer_of(func, args, kwargs, out), args, out, func)
        return out

    def alias(self, args: tuple, out: Any) -> None:
        """A view or copy of a parameter is that parameter (linear's weight reaches addmm through aten.t)."""
        source = first_tensor(args)
        key = self.key(source) if source is not None else None
        if key is not None and isinstance(out, torch.Tensor):
            self.aliases[id(out)] = (key, out)

    def key(self, t: torch.Tensor) -> int | None:
        """The id of the parameter or buffer a tensor is (or views); None for activations."""
        if id(t) in self.aliases:
            return self.aliases[id(t)][0]
        return id(t) if id(t) in self.owners else None

    def book(self, layer: Layer | None, args: tuple, out: Any, func) -> None:
        """Add one op's cost to its (module call, kind) row, with the parameters it reads for the first time."""
        op, out_shape = str(getattr(func, "_overloadpacket", f"F.{func.__name__}")), shape(first_tensor(out))
        c = self.cost(layer)
        if c is None and layer is not None and touches_empty(args, out):
            c = Cost(layer[0], category(layer[0]), shape(first_tensor(args)), out_shape)  # no elements: no work
        if c is None:
            self.unsupported[op] = self.unsupported.get(op, 0) + 1
            c = Cost(op, "other", shape(first_tensor(args)), out_shape)
        rows = [self.add(part, op, part.out_shape) for _, part in c.parts] if c.kind in COMPOSITES else []
        row = rows[0] if rows else self.add(c, op, out_shape)  # parameters go to a composite's first part
        for t in tree_leaves(args):
            key = self.key(t) if isinstance(t, torch.Tensor) else None
            if key is not None and key not in self.seen:
                self.seen.add(key)
                is_param, tensor = self.owners[key]
                row["params" if is_param else "buffers"] += tensor.numel()

    def add(self, c: Cost, op: str, out_shape: tuple) -> dict:
        """The row of the current module call for a cost's kind, with the cost added."""
        call, module, cls = self.stack[-1]
        row = self.rows.setdefault((call, c.kind, self.origin), {"name": root_name(module), "module": cls,
                                                                 "costs": [], "params": 0, "buffers": 0, "ops": []})
        row["costs"].append(c)
        row["out_shape"] = out_shape
        row["ops"] += [op, self.origin] if self.origin else [op]
        return row

    @staticmethod
    def cost(layer: Layer | None) -> Cost | None:
        """The formula's cost of a layer, or None when the op has no formula (for these arguments)."""
        if layer is None:
            return None
        try:
            return cost(layer[0], layer[1], **layer[2])
        except CnnCostError:
            return None


def touches_empty(args: tuple, out: Any) -> bool:
    """Whether an op reads or writes a tensor with no elements (no detections kept, an empty batch of boxes)."""
    return any(isinstance(t, torch.Tensor) and t.numel() == 0 for t in tree_leaves((args, out)))


def merge(name: str, costs: list[Cost], dtype: str) -> dict:
    """One table row from the costs of one or more ops of the same kind in one module call."""
    rows = [cost_row(name, stage_of(name), c, dtype) for c in costs]
    row = rows[0]
    for other in rows[1:]:
        row.update({k: row[k] + other[k] for k in SUMMED})
    return row


def table_rows(tracer: Tracer, dtype: str) -> list[dict]:
    """The tracer's rows, parameters counted per unique tensor, real output shapes."""
    rows = []
    for acc in tracer.rows.values():
        row = merge(acc["name"], acc["costs"], dtype)
        row.update(params=acc["params"], buffers=acc["buffers"], out_shape=fmt_shape(acc["out_shape"]),
                   module=acc["module"], op=" ".join(dict.fromkeys(acc["ops"])))
        rows.append(row)
    return rows


def unused_rows(model: torch.nn.Module, tracer: Tracer) -> list[dict]:
    """Parameters no op read (auxiliary heads in eval mode, dead layers): one row per owning module."""
    owners: dict[str, int] = {}
    for pname, p in model.named_parameters():
        if id(p) not in tracer.seen:
            owner = pname.rpartition(".")[0]
            owners[owner] = owners.get(owner, 0) + p.numel()
    modules = dict(model.named_modules())
    return [{"name": root_name(owner), "stage": stage_of(owner), "kind": "(unused)", "category": "other",
             "in_shape": "", "out_shape": "", "kernel": "", "stride": "", "params": n,
             "module": type(modules[owner]).__name__, "op": ""} for owner, n in owners.items()]


def trace_module(model: torch.nn.Module, x: Any, name: str = "model", strict: bool = False,
                 dtype: str = "fp32") -> Result:
    """Count a real module on its inputs (meta or real tensors): a tensor or list (one argument), a tuple (the
    arguments), a dict (keyword arguments) or an Inputs; per-layer rows in the shared Result format."""
    inputs = Inputs.of(x)
    tracer = Tracer(model)
    handles = []
    for path, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(tracer.enter(path, module)))
        handles.append(module.register_forward_hook(tracer.leave, always_call=True))
    training = model.training
    try:
        model.eval()
        with torch.no_grad(), tracer:
            if has_forward(model):  # a module without one (fvcore's NetWithReuse): its parameters only
                model(*inputs.args, **inputs.kwargs)
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    if strict and tracer.unsupported:
        raise CnnCostError(f"{name}: ops with no formula (--strict): {fmt_ops(tracer.unsupported)}")
    rows = table_rows(tracer, dtype) + unused_rows(model, tracer)
    table = frame(rows)
    table["module"], table["op"] = [r["module"] for r in rows], [r["op"] for r in rows]
    shapes = inputs.shapes()
    device = next((t.device.type for t in inputs.tensors()), None) or next(
        (t.device.type for t in model.parameters()), "cpu")
    result = Result(name, SOURCE, shapes[0] if shapes else (), table, dtype, "MACs", dict(tracer.unsupported),
                    input_shapes=shapes, device=device)
    result.notes += notes(model, tracer, table)
    if not has_forward(model):
        result.notes.insert(0, f"{type(model).__name__} has no forward: only its parameters are counted")
    return result


def has_forward(model: torch.nn.Module) -> bool:
    """Whether a module defines forward (nn.Module's own raises NotImplementedError)."""
    return type(model).forward is not torch.nn.Module.forward


def fmt_ops(ops: dict[str, int]) -> str:
    """{'aten.sub': 2} as 'aten.sub x2'."""
    return ", ".join(f"{op} x{n}" for op, n in ops.items())


def notes(model: torch.nn.Module, tracer: Tracer, table) -> list[str]:
    """What a reader should know about this trace: ops with no formula, parameters never used."""
    out = []
    if tracer.unsupported:
        out.append(f"ops with no formula, counted as 0 and listed as rows: {fmt_ops(tracer.unsupported)}")
    unused = int(table.loc[table.kind == "(unused)", "params"].sum())
    if unused:
        out.append(f"{unused:,} parameters are never used in the forward pass (rows of kind '(unused)')")
    return out


def trace(source: ModelSource, batch: int = 1, size: int | None = None, device: str = "meta",
          strict: bool = False, dtype: str = "fp32") -> Result:
    """Count a model source at an input size and batch; if its forward fails on meta (an op with no meta kernel,
    such as detection's nonzero), count on the CPU instead, with a notice: `Result.device` says where it ran."""
    def run(where: str) -> Result:
        return trace_module(source.build(where), source.inputs(batch, size, where), source.name, strict, dtype)
    return with_cpu_fallback(source, batch, size, device, run, "forward", "counted")


def with_cpu_fallback(source: ModelSource, batch: int, size: int | None, device: str, run: Callable, what: str,
                      done: str, hint: Callable[[Exception], str] = lambda e: ""):
    """run(device); if it fails on meta, run("cpu") instead (when the inputs and weights fit in memory), its
    notes saying so; any other failure of user code is one line naming `what` failed, plus hint(error)."""
    try:
        result = run(device)
    except CnnCostError:
        raise
    except Exception as e:  # noqa: BLE001 - user models fail in any way; report one line or fall back
        extra = hint(e)
        if device != "meta" or extra:
            where = "the meta device" if device == "meta" else device
            raise CnnCostError(f"{source.name}: {what} failed on {where}: {one_line(e)}{extra}") from None
        check_cpu_room(source, batch, size, e)
        try:
            result = with_cpu_fallback(source, batch, size, "cpu", run, what, done, hint)
        except CnnCostError as again:
            same = one_line(e) in str(again)
            raise CnnCostError(str(again) + ("" if same else f" (on meta: {one_line(e)})")) from None
        result.notes.insert(0, f"{what} failed on the meta device ({one_line(e)}); {done} on the CPU instead")
        result.device = "cpu"
        return result
    result.notes = source.notes + result.notes
    return result


def available_bytes() -> int:
    """Physical memory free now (Linux/macOS sysconf); a large number where the platform cannot say."""
    import os
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def check_cpu_room(source: ModelSource, batch: int, size: int | None, error: Exception) -> None:
    """Refuse the CPU fallback, in one line, when the inputs and weights alone need over half the free memory."""
    try:
        inputs = source.inputs(batch, size, "meta")
        model = source.build("meta")
    except Exception:  # noqa: BLE001 - the CPU attempt will report what is wrong
        return
    tensors = [*tree_leaves((inputs.args, inputs.kwargs)), *model.parameters(), *model.buffers()]
    needed = sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))
    free = available_bytes()
    if needed > free // 2:
        raise CnnCostError(f"{source.name}: forward failed on meta ({one_line(error)}), and counting on the CPU "
                           f"would need {needed / 1e9:,.1f} GB for the inputs and weights alone, more than half of "
                           f"the {free / 1e9:,.1f} GB free; use a smaller --batch, --size or --input")


def rollup(result: Result, depth: int = 1) -> "pd.DataFrame":  # noqa: F821
    """Totals per module at a depth of the module tree (1 = top-level children); the root's own ops as (model)."""
    names = result.table.name.map(lambda n: n if n == "(model)" else ".".join(n.split(".")[:depth]))
    summed = result.table.groupby(names, sort=False)[SUMMED].sum().reset_index()
    summed.insert(1, "rows", result.table.groupby(names, sort=False).size().values)
    return summed

