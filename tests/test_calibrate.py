"""Device profiles: the schema, the work of trace rows, and refusing a profile from elsewhere."""
import json

import pytest
import torch

from cnncost.errors import CnnCostError
from cnncost.speed import device as dev

def profile(**changes) -> dev.DeviceProfile:
    """A small measured profile, as calibrate writes one."""
    fields = dict(key="cpu-some-cpu-2t", name="Some CPU", device_type="cpu", peak_flops={"fp32": 1e11},
                  bandwidth_bytes_per_s=1e10, rates={"fp32": {"matmul": dev.Rate(1e11, 1e10, 5e-6, "measured")}},
                  measured=True, threads=2, torch=torch.__version__, machine=dev.this_machine(),
                  memory_bytes=8 << 30, created_utc="2025-01-01T00:00:00Z", op_overhead_s=2e-6,
                  memory_total_bytes=16 << 30, points=[{"dtype": "fp32", "op_class": "matmul", "best_s": 1e-3}])
    fields.update(changes)
    return dev.DeviceProfile(**fields)


# -- schema -------------------------------------------------------------------------------------------------------

def test_profile_round_trips_through_json(tmp_path):
    original = profile()
    path = tmp_path / "device.json"
    path.write_text(original.to_json())
    assert dev.load(path) == original
    assert json.loads(original.to_json())["schema"] == dev.SCHEMA


def test_a_profile_without_the_measured_extras_still_loads():
    data = json.loads(profile().to_json())
    for extra in ("op_overhead_s", "memory_total_bytes", "points"):
        del data[extra]
    loaded = dev.DeviceProfile.from_json(json.dumps(data))
    assert loaded.op_overhead_s is None and loaded.points == []



def test_device_work_is_twice_the_macs_plus_bias_adds_and_all_bytes():
    rows = [{"macs": 10, "bias_adds": 3, "bytes_read": 100, "bytes_written": 40},
            {"macs": 5, "bias_adds": 0, "bytes_read": 7, "bytes_written": 1}]
    assert dev.work(rows) == (2 * 15 + 3, 148)


# -- refusing a profile --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, device_type, threads, message", [
    ({}, "cuda", None, "is for cpu, not cuda"),
    ({"machine": "x86_64 Another CPU"}, "cpu", 2, "was measured on 'x86_64 Another CPU'"),
    ({"torch": "1.13.0"}, "cpu", 2, "was measured with torch 1.13.0"),
    ({}, "cpu", 4, "measured with 2 CPU thread\\(s\\), this run uses 4.*--threads 4"),
])
def test_check_profile_refuses_another_machine_torch_or_threads(changes, device_type, threads, message):
    with pytest.raises(CnnCostError, match=message):
        dev.check_profile(profile(**changes), device_type, threads)


def test_profile_keys():
    assert dev.profile_key("cuda", "NVIDIA H100 80GB HBM3", 2) == "cuda-nvidia-h100-80gb-hbm3"
    assert dev.profile_key("cpu", "AMD EPYC 7B13", 2) == "cpu-amd-epyc-7b13-2t"


def test_check_profile_accepts_its_own_machine_and_data_sheets():
    assert dev.check_profile(profile(), "cpu", 2).key == "cpu-some-cpu-2t"
    gpu = profile(device_type="cuda", measured=False, machine="elsewhere", torch="", threads=None)
    assert dev.check_profile(gpu, "cuda", 16) is gpu
    with pytest.raises(CnnCostError, match="measured on 'NVIDIA A100'"):
        dev.check_profile(profile(device_type="cuda", name="NVIDIA A100"), "cuda", device_name="NVIDIA H100")
