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
from cnncost.speed.device import DeviceProfile, load, this_machine
from cnncost.speed.predict import Prediction, predict_table

DEFAULT_PROFILE = Path.home() / ".cache" / "cnncost" / "cpu-profile.json"


def default_profile_path() -> Path:
    """Where `--device cpu` looks for this machine's profile: $CNNCOST_PROFILE, else ~/.cache/cnncost."""
    return Path(os.environ.get("CNNCOST_PROFILE") or DEFAULT_PROFILE)


def torch_version() -> str:
    """The installed torch's version, read without importing torch."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("torch")
    except PackageNotFoundError:
        return ""


def default_threads() -> int:
    """torch's default CPU thread count on this machine."""
    import torch
    return torch.get_num_threads()


def check_measured(profile: DeviceProfile, origin: str, threads: int | None) -> DeviceProfile:
    """A measured profile, if it was measured here: same machine, same torch, same thread count; one line if not."""
    here = this_machine()
    if profile.machine and profile.machine != here:
        raise CnnCostError(f"{origin} was measured on {profile.machine!r}, not this machine ({here!r}); run "
                           f"`cnncost calibrate` here")
    torch = torch_version()
    if profile.torch and torch and profile.torch.split("+")[0] != torch.split("+")[0]:
        raise CnnCostError(f"{origin} was measured with torch {profile.torch}, this is torch {torch}; run "
                           f"`cnncost calibrate` again")
    wanted = threads if threads is not None else default_threads()
    if profile.threads is not None and profile.threads != wanted:
        raise CnnCostError(f"{origin} was measured with {profile.threads} thread(s), not {wanted}: predict with "
                           f"--threads {profile.threads}, or calibrate with --threads {wanted} (time does not "
                           f"scale simply with threads, so cnncost does not guess)")
    return profile


def resolve(device: str | DeviceProfile, threads: int | None = None) -> DeviceProfile:
    """The device profile a --device names: a data-sheet key, 'cpu' (this machine's calibrated profile), a
    profile JSON file, or a DeviceProfile as it is; one line for anything else."""
    if isinstance(device, DeviceProfile):
        return check_measured(device, f"profile {device.key}", threads) if device.measured else device
    text = str(device).strip()
    if not text:
        raise CnnCostError("--device needs a device key (see `cnncost devices`), cpu, or a profile FILE.json")
    if text.lower() == "cpu":
        path = default_profile_path()
        if not path.is_file():
            raise CnnCostError(f"no device profile for this CPU at {path}: run `cnncost calibrate -o {path}` "
                               f"(or pass --device FILE.json)")
        return check_measured(load(path), str(path), threads)
    if text.lower().endswith(".json") or Path(text).is_file():
        return check_measured(load(text), text, threads)
    if threads is not None:
        raise CnnCostError("--threads applies to a CPU profile (--device cpu or FILE.json), not to a GPU")
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


def predict(model, device="cpu", dtype: str = "fp32", batch: int = 1, size: int | None = None,
            channels_last: bool = False, compiled: bool = False, train: bool = False, threads: int | None = None,
            inputs=None) -> Prediction:
    """Predicted time per layer and images/s of a model (a name, an nn.Module, or a traced Result) on a device."""
    profile = resolve(device, threads)
    check_dtype(profile, dtype)
    result = model if hasattr(model, "table") and hasattr(model, "totals") else None
    if result is None:
        from cnncost.trace import count
        result = count(model, size=size, batch=batch, dtype=dtype, inputs=inputs)
    shapes = getattr(result, "input_shapes", None) or [getattr(result, "input_shape", ())]
    images = shapes[0][0] if shapes and shapes[0] else batch
    table = result.table
    if train:
        from cnncost.speed.training import step_table, traced_step
        name = model if isinstance(model, str) else result.model
        table = step_table(table, traced_step(name, images, size, dtype))
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
