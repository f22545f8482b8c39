"""Device profiles (schema, the work of trace rows, refusing one from elsewhere), the fit's arithmetic, and the
timing's CPU and CUDA branches (CUDA with a stand-in torch.cuda). No test depends on how fast this machine is."""
import json
import time

import numpy as np
import pytest
import torch

from cnncost.errors import CnnCostError
from cnncost.speed import device as dev
from cnncost.speed import timing
from cnncost.speed.fit import fit_rate

TRUE = dev.Rate(1e11, 1e10, 5e-6)  # 100 GFLOP/s, 10 GB/s, 5 µs: the ridge is at 10 FLOP per byte


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


# -- fit -----------------------------------------------------------------------------------------------------------

FLOPS = np.array([1e3, 1e5, 1e6, 1e7, 1e8, 1e9, 2e6, 5e7])
BYTES = np.array([1e3, 1e6, 1e4, 1e7, 1e6, 1e8, 3e6, 1e5])  # FLOP/byte from 0.1 to 500: both sides of the ridge


def seconds(flops, moved):
    return [TRUE.seconds(f, b) for f, b in zip(flops, moved)]


def test_fit_recovers_a_known_rate():
    fit = fit_rate(FLOPS, BYTES, seconds(FLOPS, BYTES), peak_flops_per_s=1e12, bandwidth_bytes_per_s=1e11)
    assert fit.rate.flops_per_s == pytest.approx(1e11, rel=0.01)
    assert fit.rate.bytes_per_s == pytest.approx(1e10, rel=0.01)
    assert fit.rate.fixed_s == pytest.approx(5e-6, rel=0.01)
    assert fit.unidentified == "" and fit.median_error < 1e-6
    assert fit.rate.source == "measured: 8 sizes, median error 0%"


def test_fit_of_noisy_points_stays_close():
    noisy = np.array(seconds(FLOPS, BYTES)) * np.exp(np.random.default_rng(0).normal(0, 0.03, len(FLOPS)))
    fit = fit_rate(FLOPS, BYTES, noisy, 1e12, 1e11)
    assert fit.rate.flops_per_s == pytest.approx(1e11, rel=0.1)
    assert fit.rate.bytes_per_s == pytest.approx(1e10, rel=0.1)
    assert 0.005 < fit.median_error < 0.06


def test_all_compute_bound_points_leave_the_bandwidth_to_the_device():
    moved = FLOPS / 100  # 100 FLOP a byte, above the ridge of 10
    fit = fit_rate(FLOPS, moved, seconds(FLOPS, moved), peak_flops_per_s=1e12, bandwidth_bytes_per_s=1e11)
    assert fit.unidentified == "bytes_per_s" and "bytes/s not identified" in fit.rate.source
    assert fit.rate.flops_per_s == pytest.approx(1e11) and fit.rate.bytes_per_s == 1e11


def test_all_memory_bound_points_of_one_ratio_leave_the_flops_to_the_peak():
    moved = FLOPS * 4  # an elementwise op: 0.25 FLOP a byte
    fit = fit_rate(FLOPS, moved, seconds(FLOPS, moved), peak_flops_per_s=1e12, bandwidth_bytes_per_s=1e11)
    assert fit.unidentified == "flops_per_s"
    assert fit.rate.bytes_per_s == pytest.approx(1e10) and fit.rate.flops_per_s == 1e12
    assert fit.rate.fixed_s == pytest.approx(5e-6)


def test_a_fit_needs_two_timed_points():
    with pytest.raises(ValueError):
        fit_rate([1e6], [1e6], [1e-3], 1e12, 1e11)


# -- timing: the CPU clock, and the CUDA branch with a stand-in torch.cuda ---------------------------------------

class FakeEvent:
    """A CUDA event that records a fake GPU clock advancing 2 ms per call of the timed function."""

    clock_ms = 0.0

    def __init__(self, enable_timing=False):
        assert enable_timing
        self.at = None

    def record(self):
        self.at = FakeEvent.clock_ms

    def elapsed_time(self, other):
        return other.at - self.at


def test_cuda_blocks_are_timed_by_events_with_one_synchronize_each(monkeypatch):
    syncs = []
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: syncs.append(1))

    def kernel():
        FakeEvent.clock_ms += 2.0

    assert isinstance(timing.clock_for("cuda:1"), timing.CudaClock)
    assert timing.clock_for("cuda").block(kernel, 5) == pytest.approx(0.010) and len(syncs) == 1
    result = timing.measure(kernel, "cuda", budget_s=0, block_s=0.004, warmup_s=0, min_blocks=3)
    assert result.calls_per_block == 2 and result.blocks == 3
    assert result.best_s == pytest.approx(0.002) and result.median_s == pytest.approx(0.002)
    assert len(syncs) == 1 + 1 + 1 + 3  # the block above, the first call, one warm-up call, three blocks


def test_cpu_blocks_use_the_host_clock_and_a_slow_call_stops_early():
    assert isinstance(timing.clock_for("cpu"), timing.CpuClock)
    calls = []
    result = timing.measure(lambda: calls.append(1), "cpu", budget_s=0, warmup_s=0, min_blocks=4)
    assert result.blocks == 4 and result.best_s <= result.median_s and len(calls) >= 4
    with pytest.raises(timing.TooSlow):
        timing.measure(lambda: time.sleep(0.005), "cpu", max_call_s=0.001)


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
