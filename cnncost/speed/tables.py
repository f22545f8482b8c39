"""Tables for the speed report: the lecture's models' predicted images/s on GPUs beside their MACs, and "MACs don't
predict speed" in numbers. Each returns a pandas DataFrame (or a dict of figures) for reports/speed.md."""
from __future__ import annotations

import numpy as np
import pandas as pd

LECTURE_MODELS = ("alexnet", "vgg16", "googlenet", "resnet34", "resnet50", "resnext50_32x4d", "densenet121",
                  "densenet169", "densenet201", "densenet264", *(f"efficientnet_b{k}" for k in range(8)))
REPORT_DEVICES = ("h100-sxm", "a100-80gb-sxm", "rtx4090")


def lecture_speeds(models=LECTURE_MODELS, devices=REPORT_DEVICES, dtype: str = "fp16", batch: int = 256,
                   channels_last: bool = True, compiled: bool = False) -> pd.DataFrame:
    """One row per model: its GMACs and parameters per image at its own resolution, and predicted images/s on
    each device (eager AMP at the batch given, NHWC by default), with the achieved TFLOP/s those speeds mean."""
    from cnncost.speed.estimate import predict
    from cnncost.trace import count
    rows = []
    for name in models:
        result = count(name, batch=batch, dtype=dtype)
        macs = int(result.table.macs.sum()) // batch
        row = {"model": name, "size": result.input_shape[-1], "gmacs": macs / 1e9,
               "params_m": int(result.table.params.sum()) / 1e6}
        for device in devices:
            p = predict(result, device, dtype, channels_last=channels_last, compiled=compiled)
            row[f"{device}_img_per_s"] = p.img_per_s
            row[f"{device}_tflop_per_s"] = 2 * macs * p.img_per_s / 1e12
        rows.append(row)
    return pd.DataFrame(rows)


def macs_versus_speed(table: pd.DataFrame, devices=REPORT_DEVICES, reference: str = "resnet50") -> pd.DataFrame:
    """Per model and device: how many times fewer MACs than the reference it has, and how many times faster it is
    predicted to run; a ratio of the two far from 1 is MACs failing to predict speed."""
    ref = table.set_index("model").loc[reference]
    out = pd.DataFrame({"model": table.model, "macs_ratio": ref.gmacs / table.gmacs})
    for device in devices:
        out[f"{device}_speed_ratio"] = table[f"{device}_img_per_s"] / ref[f"{device}_img_per_s"]
    return out


def macs_figures(table: pd.DataFrame, devices=REPORT_DEVICES) -> dict:
    """Per device: Spearman's rank correlation of 1/MACs with predicted images/s over the models, and the spread
    of achieved TFLOP/s (largest / smallest): equal speed per MAC would make them 1.0 and 1.0x."""
    from cnncost.speed.accuracy import spearman
    return {d: {"spearman_inverse_macs": spearman(1 / table.gmacs, table[f"{d}_img_per_s"]),
                "tflop_per_s_spread": float(table[f"{d}_tflop_per_s"].max() / table[f"{d}_tflop_per_s"].min())}
            for d in devices}


def measured_figures(predicted, measured, macs) -> pd.DataFrame:
    """predict and 1/MACs (best scale) against measurements: one row each (median and p90 error, Spearman, close
    pairs named right), as benchmarks/validate_predict.py prints them."""
    from cnncost.speed.accuracy import with_baseline
    figures = with_baseline(np.asarray(predicted), np.asarray(measured), np.asarray(macs))
    return pd.DataFrame([{"predictor": k, **v} for k, v in figures.items()])
