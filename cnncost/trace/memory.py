"""The memory of one training step, predicted on the meta device: no real memory, any batch, in seconds.

A dispatch mode sees every tensor an aten op creates and follows its storage (a view shares its base's storage,
so it is counted once) with a weakref finalizer, as torch's own ``mem_tracker`` does: live bytes rise when an op
allocates and fall when the last tensor on a storage dies, so the peak over forward, loss, backward and the
optimizer step includes every temporary the ops themselves return. Saved-tensor hooks record what autograd keeps
for backward, per module and per storage. The step is ``cnncost.trace.step.training_step``, the same ops the
training-cost tracer counts; the optimizer's state is created first (one optimizer step on zero gradients), so
the step measured is a steady-state one (state held from the start, gradients freed at its end).

Allocators: ``allocator="cpu"`` counts exact bytes (the CPU allocator asks for exactly the tensor's bytes);
``allocator="cuda"`` rounds each storage up to the CUDA caching allocator's 512-byte blocks, so the peak predicts
``torch.cuda.max_memory_allocated`` (not the larger ``max_memory_reserved``). Not modelled: memory
a kernel allocates inside itself and frees before returning (cuDNN / oneDNN workspaces), the CUDA context
(~0.5 GB), the caching allocator's fragmentation and the loss scaler of fp16 training.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from functools import partial

import pandas as pd
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from cnncost.errors import CnnCostError
from cnncost.trace.fastpath import backward_output, shortcut
from cnncost.trace.peaks import FREED, MOVED
from cnncost.trace.step import (
    AUTOCAST,
    OPTIMIZERS,
    as_inputs,
    optimizer_params,
    ready_optimizer,
    targets_for,
    training_step,
)

CUDA_BLOCK = 512
ALLOCATORS = {"cpu": 1, "cuda": CUDA_BLOCK}
# oneDNN's scratch for the weight gradient of a grouped conv on a channels-last input with a kernel of 5 or more:
# groups x k_h x k_w x 256 floats, whatever the batch, size and threads (measured with torch.profiler's memory
# events on torch 2.14's CPU build; ConvNeXt's 7x7 depthwise convs, whose input a permute leaves channels-last).
ONEDNN_GROUPED_SCRATCH = 256


def device_layout(func, args: tuple, out):
    """A convolution's output in the memory format a real device gives it: channels-last when its input or weight
    is (oneDNN and cuDNN alike), where the meta kernel makes it contiguous; every other output as it is."""
    if func._overloadpacket.__name__ not in ("convolution", "_convolution") or not isinstance(out, torch.Tensor):
        return out
    last = torch.channels_last if out.dim() == 4 else torch.channels_last_3d if out.dim() == 5 else None
    if last is None or out.is_contiguous(memory_format=last):
        return out
    if any(t.is_contiguous(memory_format=last) and not t.is_contiguous() for t in args[:2]):
        return out.contiguous(memory_format=last)
    return out


def cpu_scratch(func, args: tuple) -> int:
    """Bytes a CPU kernel allocates inside itself and frees before returning, where they matter to the peak:
    convolution_backward's oneDNN scratch for a grouped conv with a large kernel on a channels-last input."""
    if func._overloadpacket.__name__ != "convolution_backward":
        return 0
    x, weight, groups = args[1], args[2], args[9] if len(args) > 9 else 1
    kernel = tuple(weight.shape[2:])
    if groups < 2 or x.dim() != 4 or min(kernel) < 5 or not x.is_contiguous(memory_format=torch.channels_last):
        return 0
    return groups * kernel[0] * kernel[1] * ONEDNN_GROUPED_SCRATCH * 4
# Every storage belongs to one category; what is not one of the first six is a temporary.
CATEGORIES = ("params", "buffers", "inputs", "grads", "optimizer_state", "activations", "temporaries")


def rounded(nbytes: int, block: int) -> int:
    """nbytes rounded up to the allocator's block size (1: exact)."""
    return -(-nbytes // block) * block


def storage_of(t: torch.Tensor) -> torch.UntypedStorage:
    """The storage a tensor (or view) lives on."""
    return t.untyped_storage()


def fresh_output(func, args: tuple, kwargs: dict | None, optimizing: bool):
    """On meta, an op's output made as the tracers make it (the input itself for an in-place op, else a new
    tensor of the shape, dtype and layout the meta kernel gives) without running PyTorch's Python meta kernels,
    which take most of a traced step's time; None for an op they do not cover. Only outputs are tracked, so the
    bytes are the same."""
    out = shortcut(func, args, kwargs)
    return backward_output(func, args, kwargs, optimizing) if out is None else out


class LiveBytes(TorchDispatchMode):
    """Live bytes per category over time, from the storages aten ops create and their finalizers (on the CPU
    allocator, with the scratch of the kernels that allocate one, see cpu_scratch)."""

    def __init__(self, block: int = 1):
        super().__init__()
        self.block = block
        self.scratch = block == ALLOCATORS["cpu"]
        self.category: dict[int, str] = {}
        self.size: dict[int, int] = {}
        self.refs: dict[int, weakref.ref] = {}
        self.live = dict.fromkeys(CATEGORIES, 0)
        self.peak = 0
        self.at_peak = dict(self.live)
        self.peak_phase = ""
        self.temporaries_peak = 0
        self.phase = "start"
        self.forward_end = 0
        self.events: list = []  # every storage's allocation, change of category and death (trace.peaks.Events)

    def track(self, t: torch.Tensor, category: str, move: bool = False) -> None:
        """Count t's storage under category if it is new (an op's output on a known storage is a view or an
        in-place result: nothing new); with move, a known storage changes category."""
        st = storage_of(t)
        key = st._cdata
        if key in self.category:
            if move:
                self.recategorize(key, category)
            return
        self.category[key], self.size[key] = category, rounded(st.nbytes(), self.block)
        self.refs[key] = weakref.ref(st, partial(self.free, key))
        self.events.append((key, st.nbytes(), category))
        self.live[category] += self.size[key]
        self.update_peak()

    def recategorize(self, key: int, category: str) -> None:
        """Move a live storage's bytes to another category (a gradient becoming .grad, state becoming state)."""
        old = self.category[key]
        self.live[old] -= self.size[key]
        self.live[category] += self.size[key]
        self.category[key] = category
        self.events.append((key, MOVED, category))

    def free(self, key: int, _ref=None) -> None:
        """Finalizer: the storage died."""
        self.live[self.category.pop(key)] -= self.size.pop(key)
        self.refs.pop(key, None)
        self.events.append((key, FREED, None))

    def total(self) -> int:
        """Live bytes now."""
        return sum(self.live.values())

    def update_peak(self) -> None:
        """Record the peak and its breakdown."""
        now = self.total()
        self.temporaries_peak = max(self.temporaries_peak, self.live["temporaries"])
        if now > self.peak:
            self.peak, self.at_peak, self.peak_phase = now, dict(self.live), self.phase

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.phase == "forward" and torch._C._current_autograd_node() is not None:
            self.phase, self.forward_end = "backward", self.total()
        scratch = cpu_scratch(func, args) if self.scratch else 0
        if scratch:  # held while the kernel runs, beside its inputs and before its outputs
            self.live["temporaries"] += scratch
            self.update_peak()
            self.live["temporaries"] -= scratch
        out = fresh_output(func, args, kwargs, self.phase == "optimizer")
        out = device_layout(func, args, func(*args, **(kwargs or {})) if out is None else out)
        created = "activations" if self.phase == "forward" else "temporaries"
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.track(t, created)
        return out


class SavedTensors:
    """Saved-tensor hooks: bytes autograd keeps for backward, per module, each storage counted once."""

    def __init__(self, model: torch.nn.Module, exclude: set[int], block: int = 1):
        self.block, self.exclude = block, exclude
        self.names = {m: n for n, m in model.named_modules()}
        self.stack = ["(loss)"]  # outside the model's forward: the loss
        self.per_module: dict[str, int] = {}
        self.storages: set[int] = set()  # keys only: holding a storage would keep it alive
        self.handles = []
        for module in model.modules():
            self.handles.append(module.register_forward_pre_hook(self.enter))
            self.handles.append(module.register_forward_hook(self.leave))

    def enter(self, module, *_) -> None:
        self.stack.append(self.names[module] or "(model)")

    def leave(self, *_) -> None:
        self.stack.pop()

    def pack(self, t: torch.Tensor):
        """Count t's storage for the innermost module; keep a detached alias (no reference cycle)."""
        st = storage_of(t)
        key = st._cdata
        if key not in self.exclude and key not in self.storages:
            self.storages.add(key)
            owner = self.stack[-1]
            self.per_module[owner] = self.per_module.get(owner, 0) + rounded(st.nbytes(), self.block)
        return t.detach()

    @staticmethod
    def unpack(t: torch.Tensor) -> torch.Tensor:
        return t

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.storages.clear()


@dataclass
class MemoryReport:
    """Per-module saved activations and the step's totals (bytes); events: every storage's allocation, change of
    category and free, in order (for cnncost.trace.peaks)."""

    per_module: pd.DataFrame
    totals: dict = field(default_factory=dict)
    events: list = field(default_factory=list, repr=False)


def phases(model: torch.nn.Module, optimizer: torch.optim.Optimizer, live: LiveBytes) -> list:
    """Hooks that tell the tracker the phase (forward and loss, then optimizer; backward is seen by the mode
    itself, as the first op run by an autograd node) and which storages become .grad; return the handles."""
    def forward(*_):
        live.phase = "forward"

    def step(*_):
        live.phase = "optimizer"

    def grad_done(p):
        live.track(p.grad, "grads", move=True)

    handles = [model.register_forward_pre_hook(forward), optimizer.register_step_pre_hook(step)]
    return handles + [p.register_post_accumulate_grad_hook(grad_done) for p in optimizer_params(optimizer)]


def state_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]


def unique_bytes(tensors, block: int = 1) -> int:
    """Bytes of the distinct storages under tensors."""
    storages = {storage_of(t)._cdata: storage_of(t).nbytes() for t in tensors}
    return sum(rounded(n, block) for n in storages.values())


def check_args(optimizer: str, dtype: str, allocator: str) -> None:
    if optimizer not in OPTIMIZERS:
        raise CnnCostError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if dtype not in AUTOCAST:
        raise CnnCostError(f"dtype must be one of {', '.join(AUTOCAST)}, got {dtype!r}")
    if allocator not in ALLOCATORS:
        raise CnnCostError(f"allocator must be one of {', '.join(ALLOCATORS)}, got {allocator!r}")


def device_of(inputs) -> str:
    """The device type the step runs on: that of the first input tensor."""
    return inputs.tensors()[0].device.type


def predict_memory(model: torch.nn.Module, inputs, targets: torch.Tensor, optimizer: str = "sgd",
                   dtype: str = "fp32", input_grad: bool = False, allocator: str = "cpu") -> MemoryReport:
    """Memory of one steady-state training step of model on inputs (a tensor or a tuple of tensors), run where
    the tensors are (meta: a prediction, no memory used); allocator "cuda" rounds to 512-byte blocks."""
    check_args(optimizer, dtype, allocator)
    inputs = as_inputs(inputs, input_grad)
    opt = ready_optimizer(model, optimizer)
    return traced_step(model, opt, inputs, targets, dtype, ALLOCATORS[allocator])


def traced_step(model: torch.nn.Module, opt: torch.optim.Optimizer, inputs, targets: torch.Tensor,
                dtype: str, block: int) -> MemoryReport:
    """One training step under the live-bytes mode and the saved-tensor hooks."""
    live = LiveBytes(block)
    for category, tensors in (("params", list(model.parameters())), ("buffers", list(model.buffers())),
                              ("optimizer_state", state_tensors(opt)),
                              ("inputs", [*as_inputs(inputs).tensors(), targets])):
        for t in tensors:
            live.track(t, category)
    live.peak, live.at_peak, live.at_start = live.total(), dict(live.live), dict(live.live)
    handles = phases(model, opt, live)
    saved = SavedTensors(model, set(live.category), block)
    try:
        with live, saved.hooks():
            training_step(model, inputs, targets, opt, dtype, device_of(as_inputs(inputs)), fused_attention=True)
    finally:
        for h in handles:
            h.remove()
        saved.remove()
    result = report(model, opt, live, saved, block)
    live.refs.clear()  # no finalizer calls into this tracker once it is done
    return result


def report(model, opt, live: LiveBytes, saved: SavedTensors, block: int) -> MemoryReport:
    """The MemoryReport of a finished step."""
    names = [n or "(model)" for n, _ in model.named_modules()] + ["(loss)"]
    per_module = pd.DataFrame({"name": names, "saved_bytes": [saved.per_module.get(n, 0) for n in names]})
    trainable = [p for p in model.parameters() if p.requires_grad]
    start = sum(live.at_start.values())
    totals = {
        "params_bytes": unique_bytes(list(model.parameters()), block),
        "buffers_bytes": unique_bytes(list(model.buffers()), block),
        "inputs_bytes": live.at_start["inputs"],
        "grads_bytes": unique_bytes(trainable, block),  # a gradient has its parameter's shape and dtype
        "optimizer_state_bytes": unique_bytes(state_tensors(opt), block),
        "saved_activations_bytes": int(per_module.saved_bytes.sum()),
        "forward_retained_bytes": live.forward_end - start,
        "temporaries_peak_bytes": live.temporaries_peak,
        "peak_bytes": live.peak,
        "peak_phase": live.peak_phase,
        **{f"peak_{c}_bytes": live.at_peak[c] for c in CATEGORIES},
    }
    return MemoryReport(per_module, totals, live.events)


def measure_cpu_step(model: torch.nn.Module, inputs, targets: torch.Tensor, optimizer: str = "sgd",
                     dtype: str = "fp32") -> dict:
    """A real steady-state training step on the CPU, measured by torch.profiler's memory events (every
    allocation and free): peak and forward-retained bytes, with the bytes live at its start added."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    inputs = as_inputs(inputs)
    opt = ready_optimizer(model, optimizer)
    start = unique_bytes([*model.parameters(), *model.buffers(), *state_tensors(opt), *inputs.tensors(), targets])
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        training_step(model, inputs, targets, opt, dtype, "cpu")
    events = list(walk(prof.profiler.kineto_results.experimental_event_tree()))
    backward = min(e.start_time_ns for e in events if e.name.startswith("autograd::engine::evaluate_function"))
    allocations = sorted((e for e in events if e.tag == _EventType.Allocation), key=lambda e: e.start_time_ns)
    running, peak, retained = 0, 0, None
    for e in allocations:
        if retained is None and e.start_time_ns >= backward:
            retained = running
        running += e.extra_fields.alloc_size  # negative for a free
        peak = max(peak, running)
    return {"peak_bytes": start + peak, "forward_retained_bytes": retained, "start_bytes": start,
            "end_bytes": start + running}


def walk(nodes):
    """Every profiler event in a tree of events, depth first."""
    for node in nodes:
        yield node
        yield from walk(node.children)


MEMORY_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
                "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_memory(memory) -> int:
    """Bytes from an int, '80GB' (10^9), '40GiB' (2^30) or a device name in the devices table (h100-sxm)."""
    if isinstance(memory, int) and not isinstance(memory, bool):
        if memory <= 0:
            raise CnnCostError(f"memory must be positive, got {memory}")
        return memory
    import re

    from cnncost.bench.devices import memory_bytes
    text = str(memory).strip()
    found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)", text, re.IGNORECASE)
    if found and float(found.group(1)) > 0:
        return int(float(found.group(1)) * MEMORY_UNITS[found.group(2).lower()])
    if found or re.fullmatch(r"[-+]?[\d.]+\s*[a-z]*", text, re.IGNORECASE) or not text:
        raise CnnCostError(f"memory must be a positive size with a unit (80GB, 40GiB) or a device, got {text!r}")
    return memory_bytes(text)


def largest_fitting(fits, guess: int) -> int:
    """The largest batch b >= 1 with fits(b) (fits shrinks as b grows), 0 if none: from a guess, gallop up
    (or down) with a doubling step to bracket the answer, then bisect the bracket."""
    if not fits(1):
        return 0
    lo, hi, step = 1, None, 1  # a good guess is settled by two steps: it fits, one more does not
    if guess > 1 and not fits(guess):
        hi = guess
        while hi - step > lo and not fits(hi - step):
            hi, step = hi - step, step * 2
        lo = max(lo, hi - step)
    else:
        lo = max(lo, guess)
        while hi is None:
            if fits(lo + step):
                lo, step = lo + step, step * 2
            else:
                hi = lo + step
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


FIT_BATCHES = (64, 256)  # traced: their storages replay every other batch's peak (cnncost.trace.peaks)
CHECK_BATCH = 16  # traced too where a storage is neither constant nor proportional to the batch


class BatchPeaks:
    """Predicted training-step memory of one model at any batch, on meta: one model and optimizer, steps cached."""

    def __init__(self, source, size: int | None = None, dtype: str = "fp32", optimizer: str = "sgd",
                 allocator: str = "cuda", progress=None):
        from cnncost.trace.models import load
        check_args(optimizer, dtype, allocator)
        self.source = load(source) if isinstance(source, str) else source
        self.size, self.dtype, self.block, self.progress = size, dtype, ALLOCATORS[allocator], progress
        self.model, self.example = self.source.instantiate("meta")
        self.optimizer = ready_optimizer(self.model, optimizer)
        self.reports: dict[int, MemoryReport] = {}
        self.affine = False  # not fitted yet

    def report(self, batch: int) -> MemoryReport:
        """The MemoryReport of a step at this batch."""
        if batch not in self.reports:
            x = self.source.inputs(batch, self.size, "meta", self.example)
            targets = targets_for(batch)
            self.reports[batch] = traced_step(self.model, self.optimizer, x, targets, self.dtype, self.block)
        return self.reports[batch]

    def peak(self, batch: int) -> int:
        return self.report(batch).totals["peak_bytes"]

    def replayed(self):
        """The step's peak at any batch from the steps at FIT_BATCHES (and CHECK_BATCH where they do not
        suffice), or None when the model's storages do not follow the batch."""
        if self.affine is False:
            from cnncost.trace.peaks import AffinePeaks
            steps = {b: self.report(b).events for b in FIT_BATCHES}
            self.affine = AffinePeaks.fit(steps, self.block)
            if self.affine is None:
                steps[CHECK_BATCH] = self.report(CHECK_BATCH).events
                self.affine = AffinePeaks.fit(steps, self.block)
        return self.affine

    def at_peak(self, batch: int) -> dict[str, int]:
        """peak_bytes and peak_<category>_bytes (live when the peak is first reached) of a step at this batch:
        from its trace where it was traced, else replayed (batch 1 is always traced)."""
        model = self.replayed() if batch not in self.reports and batch > 1 else None
        if model is None:
            t = self.report(batch).totals
            return {"peak_bytes": t["peak_bytes"], **{f"peak_{c}_bytes": t[f"peak_{c}_bytes"] for c in CATEGORIES}}
        live = model.at_peak(batch)
        return {"peak_bytes": live["peak"], **{f"peak_{c}_bytes": live.get(c, 0) for c in CATEGORIES}}

    def largest(self, memory) -> int:
        """The largest batch whose peak fits memory (bytes, '80GB', a device): steps at FIT_BATCHES give every
        other batch's peak by replay (batch 1 excepted: a dimension of size 1 can make a copy a view), else
        the peak grows almost linearly with the batch, so steps at batch 64 and 256 give a guess and a few
        more settle it."""
        limit = parse_memory(memory)
        model = self.replayed()

        def peak(batch: int) -> int:
            if model is not None and batch > 1 and batch not in self.reports:
                return model.peak(batch)
            return self.peak(batch)

        def fits(batch: int) -> bool:
            ok = peak(batch) <= limit
            if self.progress:
                self.progress(batch, peak(batch), ok)
            return ok

        slope = (peak(256) - peak(64)) / 192
        guess = int((limit - peak(256)) / slope) + 256 if slope > 0 else 256
        two = model is not None and fits(2)  # then batch 1 fits too, untraced
        return largest_fitting(lambda batch: (batch == 1 and two) or fits(batch), guess)


def largest_batch(source, memory_bytes, size: int | None = None, dtype: str = "fp32", optimizer: str = "sgd",
                  progress=None, allocator: str = "cuda") -> int:
    """The largest batch whose predicted training-step peak fits in memory_bytes (an int, '80GB', '40GiB' or
    a device such as h100-sxm), searched on meta; 0 if not even batch 1 fits. source: a model name or a
    cnncost ModelSource; progress(batch, peak_bytes, fits) is called after each step tried. Not counted: the
    CUDA context and cuDNN workspaces (leave ~1 GiB for them)."""
    return BatchPeaks(source, size, dtype, optimizer, allocator, progress).largest(memory_bytes)
