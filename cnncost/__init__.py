"""cnncost: what a CNN costs and why (MACs, parameters, activations, bytes per layer)."""
from __future__ import annotations

__version__ = "0.1.0"


def analyze(model: str, size: int | None = None, batch: int = 1, dtype: str = "fp32"):
    """The analytic per-layer Result of a registered model (its `.table` is a pandas DataFrame)."""
    from cnncost.result import Result
    from cnncost.specs import build
    return Result.from_spec(build(model, batch=batch, size=size), dtype)


def list_models(pattern: str = "*"):
    """Registered models matching a wildcard, as a DataFrame: aliases, family, size, params, core MACs."""
    import pandas as pd
    from cnncost.catalog import catalog
    return pd.DataFrame(catalog(pattern))


def compare(*models: str, size: int | None = None, batch: int = 1, dtype: str = "fp32"):
    """Models side by side: `.totals` (a row per model, ratios to the first) and `.stages` DataFrames."""
    from cnncost.catalog import compare as compare_models
    return compare_models(models, size, batch, dtype)


def scale(base: str = "efficientnet_b0", phi=None, depth: float | None = None, width: float | None = None,
          resolution: float | None = None, published: bool = False):
    """Compound scaling as a DataFrame: predicted MACs (base x d x w^2 x r^2) against the exact count, for one
    phi or several (default 0..7), explicit multipliers, or the published B0..B7."""
    import pandas as pd
    from cnncost.scaling import calculate
    return pd.DataFrame(calculate(base, phi, depth, width, resolution, published))


def predict(model, device: str = "cpu", dtype: str = "fp32", batch: int | None = None, size: int | None = None,
            channels_last: bool = False, compiled: bool = False, train: bool = False, threads: int | None = None):
    """Predicted time of a model (a name, an nn.Module, or a traced Result) on a device: a data-sheet GPU key
    (`cnncost devices`), 'cpu' (this machine's `cnncost calibrate` profile) or a profile FILE.json. Returns a
    Prediction: `.img_per_s`, `.latency_ms` and `.table` (pandas, one row per layer with `predicted_ms`)."""
    from cnncost.speed import estimate
    return estimate.predict(model, device, dtype, batch, size, channels_last, compiled, train, threads)
