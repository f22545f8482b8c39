"""One description of a device's speed, shared by calibrate (which measures it), predict and the roofline plots.

A profile says, per dtype and per op class, how long one op of a given size takes:
``seconds = fixed_s + max(flops / flops_per_s, bytes / bytes_per_s)`` (a roofline with a fixed cost per op).
It comes either from `cnncost calibrate` on this machine (measured, JSON) or from a GPU's data-sheet entry times
a few stated efficiency constants (cnncost.speed.constants). No torch import.
"""
from __future__ import annotations

import json
import platform
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from cnncost.errors import CnnCostError

SCHEMA = "cnncost-device-profile/1"
# Op classes a layer's time is predicted by (see predict.op_class for which rows fall in which).
OP_CLASSES = ("conv_dense", "conv_grouped", "conv_depthwise", "matmul", "attention", "norm", "elementwise", "pool",
              "resample", "data_movement")
DTYPES = ("fp32", "tf32", "fp16", "bf16")


@dataclass
class Rate:
    """How fast one op class runs: seconds = fixed_s + max(flops / flops_per_s, bytes / bytes_per_s)."""

    flops_per_s: float
    bytes_per_s: float
    fixed_s: float = 0.0
    source: str = ""  # how it was found: "measured: 9 sizes, median error 6%" or "data sheet x 0.55 (constants)"

    def seconds(self, flops: float, moved_bytes: float) -> float:
        """The predicted time of one op: fixed_s + max(flops / flops_per_s, bytes / bytes_per_s)."""
        return self.fixed_s + max(flops / self.flops_per_s, moved_bytes / self.bytes_per_s)

    def bound(self, flops: float, moved_bytes: float) -> str:
        """'compute' or 'memory': which side of this class's roofline an op of this size is on."""
        return "compute" if flops / self.flops_per_s >= moved_bytes / self.bytes_per_s else "memory"


@dataclass
class DeviceProfile:
    """What one device achieves, per dtype and op class; measured (calibrate) or from a data sheet."""

    key: str                      # 'h100-sxm', or 'cpu-<model>-<threads>t' for a measured CPU
    name: str                     # as torch names the device ('AMD EPYC 7B13', 'NVIDIA H100 80GB HBM3')
    device_type: str              # 'cpu' or 'cuda'
    peak_flops: dict[str, float]  # dense matmul FLOP/s per dtype: the data sheet's, or the best calibrate measured
    bandwidth_bytes_per_s: float  # memory bandwidth: the data sheet's, or the best calibrate measured
    rates: dict[str, dict[str, Rate]]  # dtype -> op class -> Rate
    measured: bool = False
    threads: int | None = None    # CPU threads the measurements used
    torch: str = ""               # torch version the measurements used
    machine: str = ""             # platform.machine() + processor string, for refusing a profile from elsewhere
    memory_bytes: int | None = None  # usable memory (GPU: what torch reports free on an idle card)
    created_utc: str = ""
    notes: list[str] = field(default_factory=list)
    schema: str = SCHEMA
    op_overhead_s: float | None = None  # measured time of a tiny op (dispatch, and launch on a GPU)
    memory_total_bytes: int | None = None  # all the memory (GPU: the card's; CPU: the machine's)
    points: list[dict] = field(default_factory=list)  # calibrate's measurements, one per dtype and case
    launch_s: float = 0.0         # host time to issue one op; a GPU overlaps it, so a step takes >= ops x launch_s

    def rate(self, dtype: str, op_class: str) -> Rate:
        """The rate of an op class in a dtype; one line if the device has no such dtype."""
        if dtype not in self.rates:
            raise CnnCostError(f"{self.key} has no {dtype} measurements or peak; it has {', '.join(self.rates)}")
        rates = self.rates[dtype]
        return rates.get(op_class) or rates["elementwise"]

    def ridge_flop_per_byte(self, dtype: str) -> float:
        """Arithmetic intensity where the matmul peak meets the bandwidth: peak / bandwidth."""
        return self.peak_flops[dtype] / self.bandwidth_bytes_per_s

    def to_json(self) -> str:
        """The profile as JSON text (floats as Python writes them, keys in a fixed order)."""
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, origin: str = "the profile") -> "DeviceProfile":
        """A profile from JSON text; one line if it is not a cnncost device profile."""
        try:
            data = json.loads(text)
            if data.get("schema") != SCHEMA:
                raise ValueError(f"schema {data.get('schema')!r}, expected {SCHEMA!r}")
            data["rates"] = {d: {k: Rate(**r) for k, r in kinds.items()} for d, kinds in data["rates"].items()}
            return cls(**data)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise CnnCostError(f"{origin} is not a cnncost device profile ({e})") from None


def work(rows: Iterable[Mapping]) -> tuple[int, int]:
    """(FLOPs, bytes) of trace rows as a Rate takes them: FLOPs = 2 x macs + bias_adds, bytes = read + written."""
    flops = moved = 0
    for row in rows:
        flops += 2 * int(row["macs"]) + int(row.get("bias_adds", 0))
        moved += int(row["bytes_read"]) + int(row["bytes_written"])
    return flops, moved


def load(path: str | Path) -> DeviceProfile:
    """A device profile from a JSON file written by `cnncost calibrate`; one line if unreadable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CnnCostError(f"cannot read device profile {path}: {getattr(e, 'strerror', None) or e}") from None
    return DeviceProfile.from_json(text, str(path))


def this_machine() -> str:
    """This machine as a profile records it: architecture and processor name."""
    return f"{platform.machine()} {cpu_name()}".strip()


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def slug(text: str) -> str:
    """Lower-case words joined by '-': 'AMD EPYC 7B13' -> 'amd-epyc-7b13'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def profile_key(device_type: str, name: str, threads: int | None = None) -> str:
    """A measured profile's key: 'cpu-amd-epyc-7b13-2t' (the threads matter on a CPU), 'cuda-nvidia-h100-80gb-hbm3'."""
    if device_type == "cpu":
        return f"cpu-{slug(name)}-{threads}t"
    return f"{device_type}-{slug(name)}"


def installed_torch() -> str:
    """The installed torch's version from the package metadata (without importing torch), or '' when absent."""
    from importlib import metadata
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return ""


def public_version(version: str) -> str:
    """A version without its local build tag: '2.14.1+cu130' -> '2.14.1'."""
    return version.partition("+")[0]


def check_profile(profile: DeviceProfile, device_type: str, threads: int | None = None,
                  device_name: str | None = None, torch_version: str | None = None) -> DeviceProfile:
    """The profile, or one line saying why it does not describe this run: another device type; for a measured
    profile, another machine (CPU), another GPU (when device_name is given), another torch release, or (CPU) another
    thread count.

    Threads are refused rather than scaled: a CPU's compute rate grows less than linearly with threads and its
    bandwidth and fixed cost hardly at all, so a profile is only trusted at the count it was measured with.
    The torch release is compared without its local build tag (+cu130), which the package metadata lacks."""
    again = f"; measure this one with `cnncost calibrate --device {device_type}"
    if profile.device_type != device_type:
        raise CnnCostError(f"device profile {profile.key} is for {profile.device_type}, not {device_type}")
    if not profile.measured:
        return profile
    if device_type == "cpu" and profile.machine != this_machine():
        raise CnnCostError(f"device profile {profile.key} was measured on {profile.machine!r}, this machine is "
                           f"{this_machine()!r}{again}`")
    if device_name is not None and profile.name != device_name:
        raise CnnCostError(f"device profile {profile.key} was measured on {profile.name!r}, this device is "
                           f"{device_name!r}{again}`")
    torch_version = installed_torch() if torch_version is None else torch_version
    if public_version(profile.torch) != public_version(torch_version):
        raise CnnCostError(f"device profile {profile.key} was measured with torch {profile.torch}, this is torch "
                           f"{torch_version or '(not installed)'}{again}`")
    if device_type == "cpu" and threads is not None and profile.threads != threads:
        raise CnnCostError(f"device profile {profile.key} was measured with {profile.threads} CPU thread(s), this run "
                           f"uses {threads}: run with --threads {profile.threads}{again} --threads {threads}`")
    return profile


def find_measured(folder: str | Path, name: str, threads: int | None = None) -> DeviceProfile | None:
    """The measured profile under folder (device-*.json) of a device (`name`: as torch names it, or the machine
    a profile records), at `threads` CPU threads (None: the most threads found), or None; for pages made from
    committed files, on any machine."""
    found = [p for p in (load(path) for path in sorted(Path(folder).glob("device-*.json")))
             if p.measured and name in (p.name, p.machine) and (threads is None or p.threads == threads)]
    return max(found, key=lambda p: p.threads or 0) if found else None
