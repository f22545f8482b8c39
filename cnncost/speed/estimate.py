"""predict's front door: which device profile a --device names, a model traced and its time predicted, and the
tables other commands show (a speed column, MACs beside predicted images/s).

A device is a key of the data-sheet table (`cnncost devices`: h100-sxm, rtx4090, ...), `cpu` (this machine's
profile from `cnncost calibrate`, found in CNNCOST_PROFILE or ~/.cache/cnncost/cpu-profile.json), or a profile
JSON file. A measured profile is used only on the machine, torch version and thread count it was measured with.
"""
from __future__ import annotations

import os
from pathlib import Path

from cnncost.errors import CnnCostError
from cnncost.speed.device import DeviceProfile, check_profile, load
from cnncost.speed.predict import Prediction, predict_table

DEFAULT_PROFILE = Path.home() / ".cache" / "cnncost" / "cpu-profile.json"
GPU_THREADS = "--threads applies to a CPU profile (--device cpu or FILE.json), not to a GPU"


def default_profile_path() -> Path:
    """Where `--device cpu` looks for this machine's profile: $CNNCOST_PROFILE, else ~/.cache/cnncost."""
    return Path(os.environ.get("CNNCOST_PROFILE") or DEFAULT_PROFILE)


def default_threads() -> int:
    """torch's default CPU thread count on this machine."""
    import torch
    return torch.get_num_threads()


def check_measured(profile: DeviceProfile, threads: int | None) -> DeviceProfile:
    """A measured profile, if it describes this run (device.check_profile: same machine, torch and, on a CPU,
    thread count: torch's default unless --threads says); one line if not."""
    if profile.device_type == "cpu":
        return check_profile(profile, "cpu", threads if threads is not None else default_threads())
    if threads is not None:
        raise CnnCostError(GPU_THREADS)
    return check_profile(profile, profile.device_type)


def resolve(device: str | DeviceProfile, threads: int | None = None) -> DeviceProfile:
    """The device profile a --device names: a data-sheet key, 'cpu' (this machine's calibrated profile), a
    profile JSON file, or a DeviceProfile as it is; one line for anything else."""
    if isinstance(device, DeviceProfile):
        return check_measured(device, threads) if device.measured else device
    text = str(device).strip()
    if not text:
        raise CnnCostError("--device needs a device key (see `cnncost devices`), cpu, or a profile FILE.json")
    if text.lower() == "cpu":
        path = default_profile_path()
        if not path.is_file():
            raise CnnCostError(f"no device profile for this CPU at {path}: run `cnncost calibrate -o {path}` "
                               f"(or pass --device FILE.json)")
        return check_measured(load(path), threads)
    if text.lower().endswith(".json") or Path(text).is_file():
        return check_measured(load(text), threads)
    if threads is not None:
        raise CnnCostError(GPU_THREADS)
    from cnncost.bench.devices import by_key
    from cnncost.speed.constants import datasheet_profile
    return datasheet_profile(by_key(text))


def check_dtype(profile: DeviceProfile, dtype: str) -> None:
    """One line when the device has no rates for a dtype (bf16 on a V100, fp16 on a CPU profile without it)."""
    from cnncost.bench.devices import BENCH_DTYPES
    if dtype not in BENCH_DTYPES:
        raise CnnCostError(f"unknown dtype {dtype!r}; choose one of {', '.join(BENCH_DTYPES)}")
    if dtype not in profile.rates:
        raise CnnCostError(f"{profile.name} has no {dtype} rates (it has {', '.join(profile.rates) or 'none'}); "
                           f"choose another --dtype")


def predict(model, device="cpu", dtype: str = "fp32", batch: int | None = None, size: int | None = None,
            channels_last: bool = False, compiled: bool = False, train: bool = False, threads: int | None = None,
            inputs=None, source=None) -> Prediction:
    """Predicted time per layer and images/s of a model (a name, an nn.Module, or a traced Result, then with the
    ModelSource it was traced from for `train`) on a device."""
    profile = resolve(device, threads)
    check_dtype(profile, dtype)
    return predict_on(profile, model, dtype, batch, size, channels_last, compiled, train, inputs, source)


def predict_on(profile: DeviceProfile, model, dtype: str = "fp32", batch: int | None = None, size: int | None = None,
               channels_last: bool = False, compiled: bool = False, train: bool = False, inputs=None,
               source=None) -> Prediction:
    """predict() on a profile taken as it is: a measured one is not checked against this machine (a page made
    from committed measurements predicts them wherever it is made)."""
    result = model if hasattr(model, "table") and hasattr(model, "totals") else None
    if result is None:
        from cnncost.trace import count
        result = count(model, size=size, batch=batch, dtype=dtype, inputs=inputs)
    shapes = getattr(result, "input_shapes", None) or [getattr(result, "input_shape", ())]
    images = shapes[0][0] if shapes and shapes[0] else batch or 1
    table = result.table
    if train:
        from cnncost.speed.training import step_table, traced_step
        table = step_table(table, traced_step(source or (model if isinstance(model, str) else result.model),
                                              images, size, dtype))
    prediction = predict_table(table, profile, dtype, images, result.model, channels_last, compiled)
    prediction.notes[:0] = list(getattr(result, "notes", []))
    if train:
        prediction.notes.append("training step: each backward row has its module's traced grad-input and "
                                "grad-weight MACs at its forward row's rate and twice its bytes (not validated)")
    return prediction


def speed_columns(result, device, dtype: str = "fp32", channels_last: bool = False,
                  compiled: bool = False) -> dict:
    """The predicted-speed figures of a traced Result on a device, for a column in show / compare:
    {'device', 'dtype', 'latency_ms', 'img_per_s', 'host_bound'}."""
    p = predict(result, device, dtype, channels_last=channels_last, compiled=compiled)
    return {"device": p.device, "dtype": dtype, "latency_ms": p.latency_ms, "img_per_s": p.img_per_s,
            "host_bound": p.host_bound}
