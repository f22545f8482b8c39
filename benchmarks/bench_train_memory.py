"""Peak memory of one training step: cnncost's prediction on meta against a real CPU step, MemTracker, torchinfo.

Per model: the measured peak of a real steady-state SGD step on the CPU (torch.profiler memory events, every
allocation and free, plus the bytes live at the step's start: parameters, buffers, momentum, batch); cnncost's
prediction on the meta device (cnncost.trace.memory.predict_memory, exact CPU bytes); torch's MemTracker
(torch.distributed._tools.mem_tracker) run on the same step under FakeTensorMode; and torchinfo's "Estimated
Total Size" (input + "forward/backward pass size" + parameters). torchinfo is not a cnncost dependency: install
it (`.venv/bin/pip install torchinfo`) or its column stays empty. Ratios are to the measurement.

Run: .venv/bin/python benchmarks/bench_train_memory.py [--cases resnet18:4:96 vgg16:2:64 ...] [--dtype fp32]
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings

import torch
import torchvision

from cnncost.report.markdown import table
from cnncost.trace.memory import measure_cpu_step, predict_memory
from cnncost.trace.step import make_optimizer, training_step

CASES = ["resnet18:4:96", "resnet50:4:96", "densenet121:4:96", "densenet121-me:4:96", "efficientnet_b0:4:96",
         "vgg16:2:64"]


def parse(case: str) -> tuple[str, dict, int, int]:
    """'densenet121-me:4:96' -> (torchvision name, kwargs, batch, size); -me: memory_efficient=True."""
    name, n, size = case.split(":")
    kwargs = {"memory_efficient": True} if name.endswith("-me") else {}
    return name.removesuffix("-me"), kwargs, int(n), int(size)


def build(name: str, kwargs: dict, device: str) -> torch.nn.Module:
    """No weights; on the CPU zeroed parameters (values do not change memory)."""
    with torch.device("meta"):
        model = getattr(torchvision.models, name)(**kwargs)
    if device == "meta":
        return model
    model = model.to_empty(device=device)
    with torch.no_grad():
        for t in (*model.parameters(), *model.buffers()):
            t.zero_()
    return model


def batch(n: int, size: int, device: str):
    x = torch.empty(n, 3, size, size, device=device)
    return (x.normal_() if device == "cpu" else x), torch.zeros(n, dtype=torch.long, device=device)


def measured(name, kwargs, n, size, dtype) -> int:
    return measure_cpu_step(build(name, kwargs, "cpu"), *batch(n, size, "cpu"), dtype=dtype)["peak_bytes"]


def ours(name, kwargs, n, size, dtype) -> int:
    x, y = batch(n, size, "meta")
    return predict_memory(build(name, kwargs, "meta"), x, y, dtype=dtype).totals["peak_bytes"]


def memtracker(name, kwargs, n, size, dtype) -> int:
    """MemTracker's peak over a steady-state step of the same model on fake CPU tensors."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker
    with FakeTensorMode():
        model = getattr(torchvision.models, name)(**kwargs)
        x, y = torch.randn(n, 3, size, size), torch.zeros(n, dtype=torch.long)
        opt = make_optimizer(model)
        training_step(model, (x[:2],), y[:2], opt, dtype, "cpu")
        tracker = MemTracker()
        tracker.track_external(model, opt, x, y)
        with tracker:
            training_step(model, (x,), y, opt, dtype, "cpu")
        return max(snap["Total"] for snap in tracker.get_tracker_snapshot("peak").values())


def torchinfo_total(name, kwargs, n, size, dtype) -> int | None:
    """torchinfo's 'Estimated Total Size' in bytes (it has no notion of training dtype: fp32 sizes)."""
    try:
        from torchinfo import summary
    except ImportError:
        return None
    stats = summary(build(name, kwargs, "cpu"), input_size=(n, 3, size, size), verbose=0, device="cpu")
    return int(stats.total_input + stats.total_output_bytes + stats.total_param_bytes)


def row(case: str, dtype: str) -> dict:
    name, kwargs, n, size = parse(case)
    real = measured(name, kwargs, n, size, dtype)
    start = time.perf_counter()
    predicted = ours(name, kwargs, n, size, dtype)
    seconds = time.perf_counter() - start
    tracked = memtracker(name, kwargs, n, size, dtype)
    info = torchinfo_total(name, kwargs, n, size, dtype)
    ratio = lambda v: None if v is None else round(v / real, 3)
    return {"model": case.split(":")[0], "batch": n, "size": size, "dtype": dtype, "measured_peak_bytes": real,
            "cnncost_peak_bytes": predicted, "cnncost_ratio": ratio(predicted), "cnncost_s": round(seconds, 2),
            "memtracker_peak_bytes": tracked, "memtracker_ratio": ratio(tracked),
            "torchinfo_total_bytes": info, "torchinfo_ratio": ratio(info)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=CASES, help="model:batch:size (-me: memory_efficient)")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    rows = []
    for case in args.cases:
        rows.append(row(case, args.dtype))
        print(f"done {case}", file=sys.stderr)
    print(table(rows, human=False))


if __name__ == "__main__":
    main()
