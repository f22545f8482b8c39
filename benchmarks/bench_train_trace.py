"""Tracing a training step against running it plainly, both on the meta device: time, and memory vs batch.

For each model (built once on meta, `weights=None`), in one process, each measured as the best of --repeats:
- `plain fwd+bwd`: model(x), cross-entropy, loss.backward() with no mode (the yardstick);
- `plain step`: the whole `training_step` (forward, loss, backward, SGD step) with no mode;
- `traced`: `trace_training` (the same step under our dispatch mode, formulas, attribution and the optimizer
  priming), what `cnncost train` runs.
The ratio traced / plain fwd+bwd is the issue's "at most 2x". Memory: Python's peak allocation (tracemalloc)
while tracing at batch 1 and at a large batch; on meta the tensors hold no data, so it should not grow.

Measured (2 shared cores, best of 7, `--models alexnet vgg16 --repeats 7 --big-batch 256`): traced / plain
fwd+bwd = 1.51 (AlexNet) and 1.60 (VGG-16), from 2.38 and 2.56 before: on meta the optimizer's state is made
directly instead of by a priming step, same-shape outputs are `new_empty` instead of `torch.empty_like` (a Python
reference on meta), and the result table is built from arrays. ResNet-50: 0.79. Python memory does not grow with
the batch (0.30 MB at batch 1 and 256 for VGG-16).

Run: .venv/bin/python benchmarks/bench_train_trace.py [--models resnet50 densenet121 efficientnet_b0 vgg16]
                                                      [--repeats 3] [--big-batch 1024]
"""
from __future__ import annotations

import argparse
import time
import tracemalloc
import warnings

MODELS = ["alexnet", "vgg16", "googlenet", "resnet18", "resnet50", "densenet121", "efficientnet_b0"]


def best_of(repeats: int, fn) -> float:
    """The fastest of `repeats` runs of fn, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_traced_bytes(fn) -> int:
    """Peak bytes Python allocated while fn ran (tracemalloc)."""
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def measure(name: str, repeats: int, big_batch: int) -> dict:
    import torch
    from cnncost.trace.models import load
    from cnncost.trace.step import make_optimizer, training_step
    from cnncost.trace.step import targets_for
    from cnncost.trace.train import trace_training

    source = load(name)
    model = source.build("meta")

    def inputs(batch: int):
        return source.input(batch, None, "meta"), targets_for(batch)

    def plain_fwd_bwd(batch: int = 1):
        x, y = inputs(batch)
        model.train()
        out = model(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        torch.nn.functional.cross_entropy(out, y).backward()
        model.zero_grad(set_to_none=True)

    optimizer = make_optimizer(model, "sgd")

    def plain_step(batch: int = 1):
        x, y = inputs(batch)
        training_step(model, (x,), y, optimizer)

    def traced(batch: int = 1):
        x, y = inputs(batch)
        return trace_training(model, x, y)

    traced()  # warm both paths up (first calls build caches, meta kernels, ...)
    plain_step()
    row = {"model": name, "plain_fwd_bwd_s": best_of(repeats, plain_fwd_bwd),
           "plain_step_s": best_of(repeats, plain_step), "traced_s": best_of(repeats, traced)}
    row["traced_vs_fwd_bwd"] = row["traced_s"] / row["plain_fwd_bwd_s"]
    row["traced_vs_step"] = row["traced_s"] / row["plain_step_s"]
    row["py_peak_mb_batch_1"] = peak_traced_bytes(lambda: traced(1)) / 1e6
    row[f"py_peak_mb_batch_{big_batch}"] = peak_traced_bytes(lambda: traced(big_batch)) / 1e6
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--big-batch", type=int, default=1024)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import torch
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of {args.repeats}; meta device")
    header = None
    for name in args.models:
        row = measure(name, args.repeats, args.big_batch)
        if header is None:
            header = list(row)
            print(" | ".join(header))
        print(" | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()), flush=True)


if __name__ == "__main__":
    main()
