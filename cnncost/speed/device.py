"""One description of a device's speed, shared by calibrate (which measures it), predict and the roofline plots.

A profile says, per dtype and per op class, how long one op of a given size takes:
``seconds = fixed_s + max(flops / flops_per_s, bytes / bytes_per_s)`` (a roofline with a fixed cost per op).
It comes either from `cnncost calibrate` on this machine (measured, JSON) or from a GPU's data-sheet entry times
a few stated efficiency constants (cnncost.speed.constants). No torch import.
"""
from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
