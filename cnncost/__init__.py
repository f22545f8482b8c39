"""cnncost: what a CNN costs and why (MACs, parameters, activations, bytes per layer)."""
from __future__ import annotations

__version__ = "0.1.0"


def analyze(model: str, size: int | None = None, batch: int = 1, dtype: str = "fp32"):
    """The analytic per-layer Result of a registered model (its `.table` is a pandas DataFrame)."""
    from cnncost.result import Result
    from cnncost.specs import build
    return Result.from_spec(build(model, batch=batch, size=size), dtype)
