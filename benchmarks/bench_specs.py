"""Speed of the analytic specs: every registered model's costs after import (goal: under 100 ms together),
against counting the same torchvision models with torch's FlopCounterMode on the meta device.

Run: .venv/bin/python benchmarks/bench_specs.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

ALL_MODELS = """
import time
from cnncost.catalog import spec_totals
from cnncost.specs import MODELS, build
start = time.perf_counter()
totals = [spec_totals(build(name)) for name in MODELS]
cold = time.perf_counter() - start
start = time.perf_counter()
totals = [spec_totals(build(name)) for name in MODELS]
print(len(MODELS), cold, time.perf_counter() - start)
"""


def fresh_process(repeats: int) -> tuple[int, float, float]:
    """Models, median first-pass seconds and median second-pass seconds, each run in a new interpreter."""
    runs = [subprocess.run([sys.executable, "-c", ALL_MODELS], check=True, capture_output=True, text=True)
            .stdout.split() for _ in range(repeats)]
    return int(runs[0][0]), statistics.median(float(r[1]) for r in runs), statistics.median(float(r[2]) for r in runs)


def tables_seconds() -> float:
    """Seconds to build every model's per-layer pandas table (Result.from_spec), after the specs are warm."""
    from cnncost.result import Result
    from cnncost.specs import MODELS, build
    start = time.perf_counter()
    for name in MODELS:
        Result.from_spec(build(name))
    return time.perf_counter() - start


def torch_counter_seconds() -> tuple[int, float]:
    """Models and seconds for torch's FlopCounterMode over every torchvision model we register (meta device)."""
    import torch
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode
    from cnncost.specs import MODELS
    entries = [e for e in MODELS.values() if e.torchvision]
    start = time.perf_counter()
    for entry in entries:
        kwargs = {"aux_logits": False, "init_weights": False} if entry.torchvision == "googlenet" else {}
        with torch.device("meta"):
            model = torchvision.models.get_model(entry.torchvision, weights=None, **kwargs).eval()
            x = torch.empty(1, 3, entry.resolution, entry.resolution)
        with FlopCounterMode(display=False), torch.no_grad():
            model(x)
    return len(entries), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    models, cold, warm = fresh_process(repeats)
    tables = tables_seconds()
    counted, torch_seconds = torch_counter_seconds()
    print(f"analytic, all {models} models, first pass after import: {cold * 1000:7.1f} ms "
          f"(median of {repeats} fresh processes; goal < 100 ms)")
    print(f"analytic, all {models} models, second pass (memo warm):   {warm * 1000:7.1f} ms")
    print(f"per-layer pandas tables for all {models} models:            {tables * 1000:7.1f} ms")
    print(f"torch FlopCounterMode on meta, {counted} torchvision models: {torch_seconds * 1000:7.1f} ms")
    print(f"ratio: torch counter / analytic first pass = {torch_seconds / cold * models / counted:.0f}x per model")


if __name__ == "__main__":
    main()
