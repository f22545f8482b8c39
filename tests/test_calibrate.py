"""`cnncost calibrate`: the device profile's schema, the FLOPs and bytes of the cases, the fit's arithmetic, the
timing's CUDA branch without a GPU, refusing a profile from elsewhere, and every bad input as one line. No test
depends on how fast this machine is."""
import dataclasses
import json
import time

import numpy as np
import pytest
import torch

from cnncost import progress
from cnncost.cli import run
from cnncost.errors import CnnCostError
from cnncost.speed import calibrate as cal
from cnncost.speed import device as dev
from cnncost.speed import timing
from cnncost.speed.fit import fit_rate

cuda = pytest.mark.cuda
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
TRUE = dev.Rate(1e11, 1e10, 5e-6)  # 100 GFLOP/s, 10 GB/s, 5 µs: the ridge is at 10 FLOP per byte


def cli(capsys, *argv):
    """Run the CLI in-process; return (exit status, stdout, stderr)."""
    status = run(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


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


# -- accounting: the FLOPs and bytes of a case are device.work of its trace rows --------------------------------

def case(op_class: str, label: str) -> cal.Case:
    """The registered case of a class whose label starts with `label`, at batch 1."""
    return next(c for c in cal.CASES[op_class](1) if c.label.startswith(label))


def test_work_of_a_3x3_conv():
    flops, moved = cal.trace_case(case("conv_dense", "ResNet-50 layer1 3x3"), "fp32")
    assert flops == 2 * (56 * 56 * 64) * (3 * 3 * 64)  # = 231,211,008; no bias
    # read: input 64*56*56*4 = 802,816 + weights 64*64*3*3*4 = 147,456; written: 64*56*56*4 = 802,816
    assert moved == 802_816 + 147_456 + 802_816 == 1_753_088


def test_work_of_a_linear_layer_with_its_bias_and_in_bf16():
    vit_mlp = case("matmul", "ViT-B/16 MLP in")
    flops, moved = cal.trace_case(vit_mlp, "fp32")
    assert flops == 2 * 197 * 768 * 3072 + 197 * 3072  # 2 x MACs + bias adds = 929,562,624 + 605,184
    # read: input 197*768*4 = 605,184 + weight 768*3072*4 = 9,437,184 + bias 3072*4 = 12,288; written 197*3072*4
    assert moved == 605_184 + 9_437_184 + 12_288 + 2_420_736 == 12_475_392
    assert cal.trace_case(vit_mlp, "bf16") == (flops, moved // 2)  # 2 bytes an element


def test_work_of_fused_attention_is_all_its_rows():
    flops, _ = cal.trace_case(case("attention", "ViT-B/16: "), "fp32")
    scores = 12 * 197 * 197  # heads x queries x keys
    # Q K^T and attention x V: 2 x scores x 64 MACs; the scale: 1 a score; softmax: 3 a score
    assert flops == 2 * (2 * scores * 64 + scores + 3 * scores) == 122_946_912


# -- registry ------------------------------------------------------------------------------------------------------

def test_every_op_class_has_cases():
    assert set(cal.CASES) == set(dev.OP_CLASSES)
    with pytest.raises(ValueError, match="registered twice"):
        cal.registers("matmul")(lambda batch: [])


@pytest.mark.parametrize("op_class", list(cal.CASES))
def test_every_case_traces_to_rows_with_formulas(op_class):
    cases = cal.CASES[op_class](2)
    assert len(cases) >= 5 and all(c.op_class == op_class for c in cases)
    for one in cases:
        flops, moved = cal.trace_case(one, "fp32")
        assert moved > 0 and (flops > 0 or op_class == "data_movement"), one.label


@pytest.mark.parametrize("op_class, groups", [("conv_dense", lambda g, c: g == 1),
                                              ("conv_grouped", lambda g, c: 1 < g < c),
                                              ("conv_depthwise", lambda g, c: g == c)])
def test_conv_classes_hold_their_kind_of_convolution(op_class, groups):
    for one in cal.CASES[op_class](1):
        conv = one.build()
        assert groups(conv.groups, conv.in_channels), one.label

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


def test_cuda_memory_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (70 << 30, 80 << 30))
    assert cal.memory("cuda:0") == (70 << 30, 80 << 30)


def test_cuda_dtypes_follow_the_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    assert cal.check_dtypes(None, "cuda") == ("fp32", "fp16")
    with pytest.raises(CnnCostError, match="bf16 does not run on Tesla T4"):
        cal.check_dtypes(["bf16"], "cuda:0")

def test_a_call_over_the_cap_skips_the_larger_sizes_of_its_class():
    plan = dataclasses.replace(cal.PLANS["quick"], max_call_s=0.0)  # every call is over the cap
    cases = [one for one in cal.plan_cases(plan) if one.op_class in ("norm", "pool")]  # two sizes each
    for one in cases:
        one.work["fp32"] = cal.trace_case(one, "fp32")
    points = cal.measure_points(cases, "cpu", "fp32", plan, progress.Silent())
    assert [p["error"].startswith("skipped: one call took ") for p in points] == [True, False, True, False]
    assert {points[1]["error"], points[3]["error"]} == {"skipped: a smaller size of its class was over the cap"}
    assert all(p["best_s"] is None for p in points)


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


# -- the command ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def quick_profile(tmp_path_factory):
    """`cnncost calibrate --quick --threads 1 -o FILE.json`, run once."""
    path = tmp_path_factory.mktemp("calibrate") / "device.json"
    assert run(["calibrate", "--quick", "--threads", "1", "-o", str(path), "--quiet"]) == 0
    return dev.load(path)


def test_quick_run_writes_a_valid_profile(quick_profile):
    p = quick_profile
    assert p.measured and p.device_type == "cpu" and p.threads == 1 and p.key.startswith("cpu-")
    assert p.key == dev.profile_key("cpu", dev.cpu_name(), 1) and p.key.endswith("-1t")
    assert p.torch == torch.__version__ and p.machine == dev.this_machine() and p.created_utc.endswith("Z")
    assert set(p.peak_flops) == set(p.rates) == {"fp32", "bf16"}
    assert all(v > 0 for v in p.peak_flops.values()) and p.bandwidth_bytes_per_s > 0 and p.op_overhead_s > 0
    assert p.memory_bytes and p.memory_total_bytes >= p.memory_bytes
    for rates in p.rates.values():
        assert set(rates) <= set(dev.OP_CLASSES)
        for rate in rates.values():
            assert rate.flops_per_s > 0 and rate.bytes_per_s > 0 and rate.fixed_s >= 0
            assert rate.source.startswith("measured: ")
    assert {"dtype", "op_class", "case", "flops", "bytes", "best_s", "median_s", "predicted_s", "error"} \
        == set(p.points[0])
    assert any("quick" in note for note in p.notes)
    assert dev.check_profile(p, "cpu", 1) is p


def test_quick_run_prints_a_table_and_json(capsys):
    status, out, _ = cli(capsys, "calibrate", "--quick", "--threads", "1", "--dtype", "fp32", "-f", "json")
    assert status == 0 and set(json.loads(out)["rates"]) == {"fp32"}
    status, out, _ = cli(capsys, "calibrate", "--quick", "--threads", "1", "--dtype", "fp32", "-f", "csv")
    assert status == 0 and out.startswith("dtype,op_class,sizes,tflop_per_s,gb_per_s,fixed_us,")


def test_summary_rows_carry_units(quick_profile):
    row = cal.summary(quick_profile)[0]
    assert list(row) == ["dtype", "op_class", "sizes", "tflop_per_s", "gb_per_s", "fixed_us", "median_error_pct",
                         "max_error_pct", "note"]


@pytest.mark.parametrize("argv, message", [
    (["--device", "tpu"], "unknown device 'tpu'; choose cpu, cuda or cuda:N"),
    (["--device", "cuda:x"], "unknown device 'cuda:x'"),
    (["--threads", "0"], "--threads must be at least 1, got 0"),
    (["--threads", "100000"], "--threads must be at most"),
    (["--dtype", "fp8"], "unknown dtype 'fp8'; choose from fp32, tf32, fp16, bf16"),
    (["--dtype", "fp32,"], "--dtype wants names separated by commas"),
    (["--dtype", "tf32"], "tf32 needs --device cuda"),
    (["-o", "/no/such/folder/device.json"], "cannot write /no/such/folder/device.json: directory"),
    (["-f", "xml"], "unknown format 'xml'"),
])
def test_bad_input_is_one_line(capsys, argv, message):
    status, out, err = cli(capsys, "calibrate", "--quick", *argv)
    assert status == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("cnncost: error: ") and message in err


def test_bad_input_writes_no_file(capsys, tmp_path):
    target = tmp_path / "device.json"
    status, _, _ = cli(capsys, "calibrate", "--quick", "--threads", "0", "-o", str(target))
    assert status == 2 and not target.exists() and list(tmp_path.iterdir()) == []


def test_an_output_directory_is_refused_before_measuring(capsys, tmp_path):
    status, _, err = cli(capsys, "calibrate", "--quick", "-o", str(tmp_path))
    assert status == 2 and "it is a directory" in err


def test_a_busy_machine_is_warned_about(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    monkeypatch.setattr("os.getloadavg", lambda: (6.3, 6.0, 5.0))
    assert cal.busy().startswith("load average 6.3 over 2 CPUs: other work will slow and scatter the times")
    monkeypatch.setattr("os.getloadavg", lambda: (0.4, 0.5, 0.5))
    assert cal.busy() is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_line(capsys):
    status, _, err = cli(capsys, "calibrate", "--device", "cuda")
    assert status == 2 and "CUDA is not available here" in err and err.count("\n") == 1


@cuda
@needs_cuda
def test_quick_run_on_a_gpu(tmp_path):
    path = tmp_path / "gpu.json"
    assert run(["calibrate", "--device", "cuda", "--quick", "-o", str(path), "--quiet"]) == 0
    p = dev.load(path)
    assert p.device_type == "cuda" and p.key.startswith("cuda-") and p.memory_total_bytes > 0
    assert "fp32" in p.rates and all(r.flops_per_s > 0 for r in p.rates["fp32"].values())
