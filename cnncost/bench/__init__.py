"""Measured speed next to counted cost: the benchmark runner, device peaks, CSV rows, plots, training budget.

Nothing here imports torch at import time; the runner and counters import it when they run.
"""
