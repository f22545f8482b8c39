"""What each part of `cnncost report` costs: CPU seconds and peak resident memory, one part after another.

Runs every part of every page (cnncost.report.pages) in this process on one torch thread, as a worker does,
costliest first, timing each with process_time and resetting the kernel's resident high-water mark (VmHWM,
Linux) before it, and prints a table and the COSTS / HEAVY literals that cnncost/report/__init__.py keeps: the
progress bar's weights, the order parts start in, and which parts must not run beside each other (real forwards
that grow a worker by hundreds of MB).

Run: .venv/bin/python benchmarks/bench_report.py [--out /tmp/report-parts] [--heavy-mb 200]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path


def resident_peak_mb() -> float:
    """This process's resident high-water mark since the last reset, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    """Start a new resident high-water mark (Linux: write 5 to clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/report-parts")
    parser.add_argument("--heavy-mb", type=float, default=200.0,
                        help="a part whose peak grows the process by more than this is heavy")
    args = parser.parse_args()
    import torch

    from cnncost.report import pages, preload
    from cnncost.report.schedule import call
    torch.set_num_threads(1)  # as each of the report's workers

    out = Path(args.out)
    for sub in ("figures", "models"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    start = time.process_time()
    preload()
    print(f"imports: {time.process_time() - start:.1f} s CPU")
    parts = sorted((p for page in pages(out) for p in page.parts), key=lambda p: -p.cost)
    rows = []
    for part in parts:
        reset_peak()
        before = resident_peak_mb()
        start = time.process_time()
        call(part)
        rows.append((part.key, time.process_time() - start, resident_peak_mb(), resident_peak_mb() - before))
        print(f"{part.key:45s} {rows[-1][1]:7.2f} s  peak {rows[-1][2]:7.0f} MB (+{rows[-1][3]:.0f})", flush=True)
    print(f"total: {sum(r[1] for r in rows):.1f} s CPU in {len(rows)} parts")
    print("COSTS = {" + ", ".join(f'"{k}": {max(round(s, 1), 0.1)}' for k, s, _, _ in rows) + "}")
    print("HEAVY = (" + ", ".join(f'"{k}"' for k, _, _, grown in rows if grown > args.heavy_mb) + ",)")


if __name__ == "__main__":
    main()
