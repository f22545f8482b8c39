"""Other tools as the same Result type: fvcore, ptflops (pytorch and aten backends) and torch's FlopCounterMode.

Each tool's per-module numbers become rows (module, op) with the module's own count (its descendants'
subtracted), the op mapped to our kind and category, and the tool's own op name kept in column ``op``.
The ``macs`` column is always MACs; ``convention`` records the tool's native unit (torch: FLOPs = 2 x MACs,
halved here; its native total is in the notes). fvcore and ptflops's pytorch backend need a real forward pass
(CPU tensors); torch's counter and ptflops's aten backend only read shapes, so they run on the meta device.
"""
from __future__ import annotations

import warnings
from collections import Counter, defaultdict
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

import cnncost.compat  # noqa: F401  (backports for older torch releases)
from cnncost.result import COLUMNS, INT_COLUMNS, Result, frame
from cnncost.trace.kinds import category, root_name, stage_of, tool_kind
from cnncost.trace.sources import Inputs, ModelSource, one_line

TOOLS = ("fvcore", "ptflops", "ptflops-aten", "torch")
DEVICE = {"fvcore": "cpu", "ptflops": "cpu", "ptflops-aten": "meta", "torch": "meta"}
CONVENTION = {"fvcore": "MACs", "ptflops": "MACs", "ptflops-aten": "MACs", "torch": "FLOPs = 2 x MACs"}

Counts = dict[str, Counter]
TEXT_COLUMNS = [c for c in COLUMNS if c not in INT_COLUMNS]


def own_counts(inclusive: Counts) -> Counts:
    """Per-module counts without descendants: each module's count minus those of its nearest listed children."""
    own = {name: Counter(ops) for name, ops in inclusive.items()}
    for name, ops in inclusive.items():
        parent = nearest_parent(name, inclusive)
        if parent is not None:
            own[parent].subtract(ops)
    return {name: Counter({op: n for op, n in ops.items() if n}) for name, ops in own.items()}


def nearest_parent(name: str, names: dict) -> str | None:
    """The closest ancestor of a module path among `names` ('' is the root); None for the root itself."""
    while name:
        name = name.rpartition(".")[0]
        if name in names:
            return name
    return None


def call(model: torch.nn.Module, x) -> None:
    """Run a model on its inputs: a tensor, or Inputs (several arguments, keyword arguments)."""
    inputs = Inputs.of(x)
    model(*inputs.args, **inputs.kwargs)


def first_shape(x) -> tuple[int, ...]:
    """The shape of a model's (first) input tensor."""
    shapes = Inputs.of(x).shapes()
    return shapes[0] if shapes else ()


def to_result(tool: str, model_name: str, x, counts: Counts, params: dict[str, int] | None = None,
              per_mac: int = 1, unsupported: dict | None = None, notes: list[str] | None = None) -> Result:
    """A Result with one row per (module, tool op): own counts in MACs, own parameters on the module's first row."""
    rows, params = [], dict(params or {})
    for name, ops in counts.items():
        for op, n in ops.items():
            rows.append(tool_row(name, tool_kind(op), op, macs=int(n) // per_mac, params=params.pop(name, 0)))
    rows += [tool_row(name, "(params)", "", params=n) for name, n in params.items() if n]
    table = frame(rows)
    table["op"] = [r["op"] for r in rows]
    return Result(model_name, tool, first_shape(x), table, convention=CONVENTION[tool],
                  unsupported=dict(unsupported or {}), notes=list(notes or []))


def tool_row(name: str, kind: str, op: str, **counts) -> dict:
    """A table row from a tool's count for a module (shapes unknown to the tool left empty)."""
    return {**dict.fromkeys(TEXT_COLUMNS, ""), "name": root_name(name), "stage": stage_of(name), "kind": kind,
            "category": category(kind), "op": op, **counts}


@contextmanager
def module_stack(model: torch.nn.Module, push: Callable[[str], None], pop: Callable[[], None]) -> Iterator[None]:
    """Calls push(module path) before and pop() after every module's forward, while the block runs."""
    def enter(path: str) -> Callable:
        def hook(*_) -> None:
            push(path)
        return hook

    def leave(*_) -> None:
        pop()

    handles = []
    for path, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(enter(path)))
        handles.append(module.register_forward_hook(leave, always_call=True))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def no_graph() -> Iterator[None]:
    """No autograd graph (it would hold every activation until the forward ends: 5 GB for EfficientNet-B7 at 600
    px), with attention's inference fast path off, so the forward runs the ops it runs with autograd on."""
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


def fvcore_result(model: torch.nn.Module, x, name: str) -> Result:
    """fvcore's FlopCountAnalysis: by_module_and_operator (MACs; BN as 2 ops per element), its unsupported ops."""
    with warnings.catch_warnings(), no_graph():
        warnings.simplefilter("ignore")  # fvcore's import and jit tracing warn about torch.jit
        from fvcore.nn import FlopCountAnalysis, parameter_count
        inputs = Inputs.of(x)
        if inputs.kwargs:
            raise ValueError("fvcore traces positional inputs only; this model takes keyword inputs")
        analysis = FlopCountAnalysis(model, inputs.args).unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        analysis.tracer_warnings("none")
        counts = own_counts(analysis.by_module_and_operator())
        unsupported = dict(analysis.unsupported_ops())
    params = own_counts({k: Counter(params=v) for k, v in parameter_count(model).items()})
    return to_result("fvcore", name, x, counts, {k: v["params"] for k, v in params.items()}, 1, unsupported,
                     [f"fvcore total {analysis.total():,} (it counts one fused multiply-add as one flop: MACs)"])


def ptflops_patches() -> list[tuple[object, str, Callable, str]]:
    """What ptflops's pytorch backend patches: (owner, attribute, its counting handler, label)."""
    import torch.nn.functional as F
    from ptflops import pytorch_ops as po
    patches = [(F, attr, po.FUNCTIONAL_MAPPING[fn], f"F.{attr}") for attr, fn in vars(F).items()
               if callable(fn) and fn is not F.linear and any(fn is k for k in po.FUNCTIONAL_MAPPING)]
    for fn, handler in po.TENSOR_OPS_MAPPING.items():
        for owner, prefix in ((torch, "torch."), (torch.Tensor, "Tensor.")):
            if getattr(owner, fn.__name__, None) is fn:
                patches.append((owner, fn.__name__, handler, prefix + fn.__name__))
    return patches


@contextmanager
def patched(patches: list, record: Callable[[str, int], None]) -> Iterator[None]:
    """Each patched function records its handler's count, then runs the original (as ptflops does)."""
    def wrap(fn, handler, label):
        def call(*args, **kwargs):
            record(label, int(handler(*args, **kwargs)))
            return fn(*args, **kwargs)
        return call

    originals = [(owner, attr, getattr(owner, attr)) for owner, attr, _, _ in patches]
    try:
        for owner, attr, handler, label in patches:
            setattr(owner, attr, wrap(getattr(owner, attr), handler, label))
        yield
    finally:
        for owner, attr, fn in originals:
            setattr(owner, attr, fn)


def ptflops_result(model: torch.nn.Module, x, name: str) -> Result:
    """ptflops's pytorch backend: its module hooks (conv/linear with bias, BN x2, ReLU, pools) and its patches of
    F.relu, F.max_pool2d, ..., torch.add, Tensor.mul (MACs). Run with ptflops's own counting functions,
    attributed per module here; the whole-batch count (ptflops divides module counts by the batch, not
    functional ones)."""
    from ptflops import pytorch_ops as po
    stack, counts, called = [""], defaultdict(Counter), set()

    def hook(module, inputs, output):
        module.__flops__ = 0
        po.MODULES_MAPPING[type(module)](module, inputs, output)
        counts[stack[-1]][f"nn.{type(module).__name__}"] += int(module.__flops__)
        del module.__flops__

    handles = [m.register_forward_hook(hook) for m in model.modules() if type(m) in po.MODULES_MAPPING]
    record = lambda label, n: counts[stack[-1]].update({label: n})  # noqa: E731
    try:
        with module_stack(model, lambda path: (called.add(path), stack.append(path)), stack.pop), \
                patched(ptflops_patches(), record), torch.no_grad():
            call(model, x)
    finally:
        for handle in handles:
            handle.remove()
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    result = to_result("ptflops", name, x, dict(counts), notes=[f"ptflops counts {params:,} trainable parameters"])
    # on torch 2.4, nn.TransformerEncoderLayer in eval under no_grad runs one fused kernel even with hooks
    # attached (pytorch/pytorch#128413): its submodules are never called, and ptflops sees nothing in them
    result.not_called = [root_name(path) for path, _ in model.named_modules()
                         if not any(c == path or c.startswith(path + ".") for c in called)]  # nor a descendant
    return result


def ptflops_aten_result(model: torch.nn.Module, x, name: str) -> Result:
    """ptflops's aten backend: its dispatch mode counts convolution and matrix multiplies, bias adds included."""
    from ptflops.aten_engine import FlopCounterMode
    mode = FlopCounterMode(module=None)
    with module_stack(model, mode.parents.append, mode.parents.pop), mode, torch.no_grad():
        call(model, x)
    counts = {name_: Counter({str(op): n for op, n in ops.items()}) for name_, ops in mode.flop_counts.items()
              if name_ != "Global"}
    return to_result("ptflops-aten", name, x, own_counts(counts))


def torch_result(model: torch.nn.Module, x, name: str) -> Result:
    """torch.utils.flop_counter.FlopCounterMode: FLOPs = 2 x MACs of convolution and matrix multiplies only."""
    from torch.utils.flop_counter import FlopCounterMode
    mode = FlopCounterMode(display=False)
    with mode, torch.no_grad():
        call(model, x)
    root = type(model).__name__
    counts = {"" if k == root else k.removeprefix(root + "."): Counter({str(op): n for op, n in ops.items()})
              for k, ops in mode.get_flop_counts().items() if k != "Global"}
    total = mode.get_total_flops()
    return to_result("torch", name, x, own_counts(counts), per_mac=2,
                     notes=[f"torch reports {total:,} FLOPs = 2 x {total // 2:,} MACs; halved here"])


ADAPTERS = {"fvcore": fvcore_result, "ptflops": ptflops_result, "ptflops-aten": ptflops_aten_result,
            "torch": torch_result}


def run_tools(source: ModelSource, tools: tuple[str, ...] = TOOLS, batch: int | None = None,
              size: int | None = None,
              ) -> tuple[dict[str, Result], dict[str, str]]:
    """Each tool's Result for a model (one model and input per device, shared), and the tools that failed."""
    results, errors, built = {}, {}, {}

    def run(tool: str, device: str) -> Result:
        if device not in built:
            model, example = source.instantiate(device)
            built[device] = (model, source.inputs(batch, size, device, example))
        model, x = built[device]
        result = ADAPTERS[tool](model, x, source.name)
        result.device = device
        return result

    for tool in tools:
        try:
            results[tool] = run(tool, DEVICE[tool])
        except Exception as e:  # noqa: BLE001 - a tool failing on a model is reported, not fatal
            try:  # as the trace: a forward that fails on meta runs on the CPU
                if DEVICE[tool] != "meta":
                    raise
                results[tool] = run(tool, "cpu")
            except Exception:  # noqa: BLE001
                errors[tool] = one_line(e)
    return results, errors
