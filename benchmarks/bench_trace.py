"""Our meta-device tracer against fvcore, ptflops and torch's FlopCounterMode: time and peak memory.

Each measurement runs in a fresh process (peak RSS from getrusage is per process): import, build the model the
way the tool needs it (ours on the meta device; the others on the CPU with a real input tensor), then count it
twice ('cold' = the first count in the process, what one CLI call costs; 'warm' = the second). Prints a table,
time ratios to our tracer and peak memory; the cases span small and large inputs.

Run: .venv/bin/python benchmarks/bench_trace.py [--cases resnet50:1:224 resnet50:64:224 efficientnet_b7:8:600]
                                                [--tools ours fvcore ptflops ptflops-aten torch] [--timeout 900]
                                                [--memory-gb 16]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CASES = ["resnet50:1:224", "resnet50:64:224", "efficientnet_b7:8:600"]
TOOLS = ["ours", "fvcore", "ptflops", "ptflops-aten", "torch"]


def rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def counter(tool: str, model, x):
    """A function counting the model once with a tool, returning its total as the tool reports it."""
    import warnings
    warnings.simplefilter("ignore")
    if tool == "ours":
        from cnncost.trace.counter import count_module
        return lambda: count_module(model, x).total()
    if tool == "fvcore":
        from fvcore.nn import FlopCountAnalysis
        return lambda: FlopCountAnalysis(model, x).unsupported_ops_warnings(False).total()
    if tool == "torch":
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        def count():
            with FlopCounterMode(display=False) as mode, torch.no_grad():
                model(x)
            return mode.get_total_flops()
        return count
    from ptflops import get_model_complexity_info
    backend = "aten" if tool == "ptflops-aten" else "pytorch"

    def count():  # ptflops prints a failed forward's exception and returns None
        macs = get_model_complexity_info(model, tuple(x.shape[1:]), input_constructor=lambda _: x,
                                         as_strings=False, print_per_layer_stat=False, backend=backend)[0]
        if macs is None:
            raise RuntimeError("ptflops returned no count: its forward pass failed")
        return macs
    return count


def child(tool: str, case: str, limit_gb: float) -> dict:
    """One measurement (in a fresh process): build, count twice, report times and peak memory."""
    limit = int(limit_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))  # fail with an error rather than wake the OOM killer
    import torch  # noqa: F401  (imports before the baseline)
    import cnncost.trace.adapters  # noqa: F401
    from cnncost.trace.models import load
    name, batch, size = case.split(":")
    base = rss_mb()
    device = "meta" if tool == "ours" else "cpu"
    start = time.perf_counter()
    source = load(name)
    model, x = source.build(device), source.input(int(batch), int(size), device)
    build = time.perf_counter() - start
    count = counter(tool, model, x)
    times, total = [], None
    for _ in range(2):
        start = time.perf_counter()
        total = count()
        times.append(time.perf_counter() - start)
    return {"tool": tool, "case": case, "build_s": round(build, 3), "cold_s": round(times[0], 3),
            "warm_s": round(times[1], 3), "total": int(total), "rss_after_import_mb": round(base),
            "peak_rss_mb": round(rss_mb())}


def measure(tool: str, case: str, timeout: int, limit_gb: float) -> dict:
    """Run one measurement in a subprocess; a failure or timeout becomes a row with an error."""
    argv = [sys.executable, __file__, "--child", tool, case, str(limit_gb)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"tool": tool, "case": case, "error": f"timeout after {timeout} s"}
    if done.returncode:
        last = (done.stderr.strip().splitlines() or [f"killed by signal {-done.returncode}"])[-1]
        said = (done.stdout + done.stderr).lower()
        memory = "alloc" in said or "out of memory" in said or done.returncode == -9
        return {"tool": tool, "case": case,
                "error": f"out of memory (over {limit_gb:g} GB)" if memory else last[:120]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(rows: list[dict]) -> None:
    """The measurements as a table, then ratios to our tracer per case and our memory across batches."""
    from tabulate import tabulate
    print(tabulate(rows, headers="keys", tablefmt="github"))
    ours = {r["case"]: r for r in rows if r["tool"] == "ours" and "error" not in r}
    print()
    for r in rows:
        mine = ours.get(r["case"])
        if r["tool"] != "ours" and mine and "error" not in r:
            print(f"{r['case']:22s} {r['tool']:13s} cold {r['cold_s'] / mine['cold_s']:7.1f}x slower, "
                  f"warm {r['warm_s'] / mine['warm_s']:7.1f}x slower, peak memory {r['peak_rss_mb']:,} MB "
                  f"vs ours {mine['peak_rss_mb']:,} MB")
    print("\nour peak memory by case (flat in batch means the meta device holds no data):")
    for case, r in ours.items():
        print(f"  {case:22s} {r['peak_rss_mb']:,} MB (after imports {r['rss_after_import_mb']:,} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=CASES, help="MODEL:BATCH:SIZE")
    parser.add_argument("--tools", nargs="+", default=TOOLS, choices=TOOLS)
    parser.add_argument("--timeout", type=int, default=900, help="Seconds per measurement.")
    parser.add_argument("--memory-gb", type=float, default=16.0, help="Memory limit per measurement (GB).")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        tool, case, limit = args.child
        print(json.dumps(child(tool, case, float(limit))))
        return
    rows = []
    for case in args.cases:
        for tool in args.tools:
            rows.append(measure(tool, case, args.timeout, args.memory_gb))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    report(rows)


if __name__ == "__main__":
    main()
