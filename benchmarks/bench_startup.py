"""Start-up speed: `cnncost bottleneck` (no torch import) against `python -c "import torch"`.

Run: .venv/bin/python benchmarks/bench_startup.py [--repeats 7]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

CNNCOST = str(Path(sys.executable).with_name("cnncost"))
COMMANDS = {
    "cnncost bottleneck": [CNNCOST, "bottleneck", "--format", "json"],
    'python -c "import torch"': [sys.executable, "-c", "import torch"],
    'python -c "pass"': [sys.executable, "-c", "pass"],
}


def wall_time(argv: list[str], repeats: int) -> float:
    """Median wall-clock seconds of a command over repeats (after one warm-up run)."""
    subprocess.run(argv, check=True, capture_output=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    repeats = parser.parse_args().repeats
    times = {name: wall_time(argv, repeats) for name, argv in COMMANDS.items()}
    ours, torch_import = times["cnncost bottleneck"], times['python -c "import torch"']
    for name, seconds in times.items():
        print(f"{name:32s} {seconds * 1000:8.1f} ms (median of {repeats})")
    print(f"ratio: import torch / cnncost bottleneck = {torch_import / ours:.1f}x")


if __name__ == "__main__":
    main()
