"""`cnncost profile` measured: coverage, profiler overhead, and its latency against a plain timm-style loop; and the
per-layer profiles reports/speed.md is made from.

For each model and mode (inference at batch 1 and 8, a training step at batch 2), on this CPU at torch's default
thread count:

- profile: latency_ms (plain runs, no profiler), profiled_ms (the rows' sum under the profiler), coverage =
  profiled / latency, in ops = coverage without the (between ops) row (Python between the ops), overhead = a profiled run's wall time over a plain one's - 1, spread of the repeats;
- a timm-style loop: perf_counter around `iters` steps after a warm-up (timm's benchmark.py), median of rounds,
  taken in turns with profile's own latency so that the machine's drift falls on both.

With --write, the per-layer profiles of ResNet-50 and EfficientNet-B0 (inference at batch 1, a training step at
batch 2) are written to results/profile-cpu.csv, each row with the machine, torch and threads, and beside each
inference row the time `cnncost predict --device FILE` predicts for it (--profile FILE: this CPU's calibrated
device profile).

Run: .venv/bin/python benchmarks/bench_profile.py [--models resnet50 efficientnet_b0] [--repeats 3]
                                                  [--write --profile results/device-cpu-....json]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from cnncost.speed.profile import profile_model
from cnncost.trace.models import load

ROOT = Path(__file__).resolve().parent.parent
CASES = [("infer", 1), ("infer", 8), ("train", 2)]
REPORTED = ("resnet50", "efficientnet_b0")


def timm_loop(name: str, mode: str, batch: int, iters: int = 3, rounds: int = 3) -> float:
    """Milliseconds per step the way timm's benchmark.py measures it: perf_counter around `iters` steps (a forward
    under no_grad, or forward, loss, backward and SGD step), after two warm-up steps; median of rounds."""
    source = load(name)
    model, example = source.instantiate("cpu")
    x = source.inputs(batch, None, "cpu", example).args[0]
    target = torch.zeros(batch, dtype=torch.long)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, foreach=False)
    model.train(mode == "train")

    def step():
        if mode == "infer":
            with torch.inference_mode():
                model(x)
            return
        loss = torch.nn.functional.cross_entropy(model(x), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(iters):
            step()
        times.append((time.perf_counter() - start) / iters * 1e3)
    return statistics.median(times)


def rows_for_report(p, name: str, mode: str, batch: int, device_profile: str | None) -> list[dict]:
    """A profile's rows as results/profile-cpu.csv holds them (with predict's time beside inference rows)."""
    import platform

    from cnncost.speed.device import cpu_name
    predicted = {}
    if device_profile and mode == "infer":  # predict's time for the same rows (same names and kinds, in order)
        from cnncost.speed.estimate import predict
        from cnncost.trace import count
        prediction = predict(count(name, batch=batch), device_profile, "fp32", threads=p.threads).table
        keys = list(zip(prediction.name, prediction.kind))
        mine = list(zip(p.table.name, p.table.kind))[:len(keys)]
        if keys == mine:
            predicted = dict(enumerate(prediction.predicted_ms))
    out = []
    for i, r in enumerate(p.table.to_dict("records")):
        macs = r.get("train_macs", r.get("macs", 0)) if mode == "train" else r.get("macs", 0)
        out.append({"machine": f"{platform.machine()} {cpu_name()}", "torch": torch.__version__, "threads": p.threads,
                    "model": name, "mode": mode, "batch": batch, "dtype": "fp32", "name": r["name"],
                    "kind": r["kind"], "category": r["category"], "macs": int(macs or 0),
                    "bytes": int((r.get("bytes_read") or 0) + (r.get("bytes_written") or 0)) if mode == "infer" else 0,
                    "time_ms": round(r["time_ms"], 5), "predicted_ms": round(predicted[i], 5) if i in predicted
                    else "", "latency_ms": round(p.latency_ms, 4), "coverage": round(p.coverage, 4)})
    return out


def in_ops(p) -> float:
    """The share of the plain latency inside op events: coverage without the (between ops) row."""
    from cnncost.speed.profile import BETWEEN
    return float(p.table.time_ms[p.table.name != BETWEEN].sum()) / p.latency_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(REPORTED))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="write results/profile-cpu.csv")
    parser.add_argument("--profile", default=None, help="this CPU's device profile (for predicted_ms)")
    args = parser.parse_args()
    written = []
    print(f"{'model':18s} {'mode':6s} {'batch':>5s} {'latency':>10s} {'timm loop':>10s} {'ratio':>6s} "
          f"{'coverage':>9s} {'in ops':>7s} {'overhead':>9s} {'spread':>7s}")
    for name in args.models:
        for mode, batch in CASES:
            p = profile_model(load(name), "cpu", "fp32", batch, train=mode == "train", repeats=args.repeats,
                              profile_path=args.profile)
            loop = timm_loop(name, mode, batch)
            print(f"{name:18s} {mode:6s} {batch:5d} {p.latency_ms:8.2f}ms {loop:8.2f}ms {p.latency_ms / loop:6.3f} "
                  f"{p.coverage:9.1%} {in_ops(p):7.1%} {p.overhead:9.1%} {p.spread:7.1%}", flush=True)
            if args.write and name in REPORTED and (mode, batch) in (("infer", 1), ("train", 2)):
                written += rows_for_report(p, name, mode, batch, args.profile)
    if written:
        import pandas as pd

        from cnncost.output import write_atomic
        path = ROOT / "results" / "profile-cpu.csv"
        write_atomic(path, pd.DataFrame(written).to_csv(index=False))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
