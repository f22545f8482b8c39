"""predict: the roofline arithmetic by hand on a three-layer model, op classes, torch.compile's fusion, the GPU
rules, bad input as one line, and the CLI's JSON."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from cnncost.errors import CnnCostError
from cnncost.speed import constants
from cnncost.speed.device import OP_CLASSES, DeviceProfile, Rate
from cnncost.speed.predict import op_class, predict_table, tensor_core_padding, work


def hand_profile(device_type: str = "cpu", **extra) -> DeviceProfile:
    """Every class at 1 TFLOP/s and 100 GB/s with 1 us per op: easy to follow by hand."""
    rates = {"fp32": {c: Rate(1e12, 1e11, 1e-6) for c in OP_CLASSES}}
    return DeviceProfile("hand", "hand-made device", device_type, {"fp32": 1e12}, 1e11, rates, **extra)


def row(name, kind, category, in_shape, out_shape, macs, bias_adds, read, written, groups=1, op="", kernel=""):
    """One trace row with the fields predict reads."""
    return {"name": name, "kind": kind, "category": category, "in_shape": in_shape, "out_shape": out_shape,
            "kernel": kernel, "groups": groups, "macs": macs, "bias_adds": bias_adds, "bytes_read": read,
            "bytes_written": written, "op": op}


# conv 3->64, 3x3, stride 2 on 224x224 -> 112x112, fp32:
#   MACs = 112*112*64 * 3*3*3 = 21,676,032; bias adds = 112*112*64 = 802,816
#   read = (3*224*224 + 64*27 + 64) * 4 = 609,280 B; written = 64*112*112*4 = 3,211,264 B
# relu on 64x112x112: 802,816 "MACs" (one per element), 3,211,264 B read and written
# linear 64 -> 10: 640 MACs + 10 bias adds; read (64 + 640 + 10) * 4 = 2,856 B; written 40 B
THREE = pd.DataFrame([
    row("conv", "conv2d", "conv", "1x3x224x224", "1x64x112x112", 21_676_032, 802_816, 609_280, 3_211_264,
        kernel="3x3"),
    row("relu", "relu", "activation", "1x64x112x112", "1x64x112x112", 802_816, 0, 3_211_264, 3_211_264),
    row("fc", "linear", "linear", "1x64", "1x10", 640, 10, 2_856, 40),
])


def test_three_layers_by_hand():
    p = predict_table(THREE, hand_profile(), "fp32", batch=1)
    ms = p.table.set_index("name").predicted_ms
    # conv: flops = 2*21,676,032 + 802,816 = 44,154,880 / 1e12 = 44.15488 us (compute-bound:
    #       bytes 3,820,544 / 1e11 = 38.20544 us); + 1 us fixed = 45.15488 us
    assert ms["conv"] == pytest.approx(45.15488e-3)
    # relu: bytes 6,422,528 / 1e11 = 64.22528 us (memory-bound: 1,605,632 flops / 1e12 = 1.6 us) + 1 us
    assert ms["relu"] == pytest.approx(65.22528e-3)
    # fc: bytes 2,896 / 1e11 = 0.02896 us (flops 1,290 / 1e12 = 0.00129 us) + 1 us
    assert ms["fc"] == pytest.approx(1.02896e-3)
    assert list(p.table.bound) == ["compute", "memory", "memory"]
    assert p.latency_ms == pytest.approx((45.15488 + 65.22528 + 1.02896) * 1e-3)  # 111.40912 us
    assert p.img_per_s == pytest.approx(1 / 111.40912e-6)  # 8,975.7 images/s
    assert list(p.table.op_class) == ["conv_dense", "elementwise", "matmul"]


def test_host_floor():
    # on a GPU (fp32, NHWC: none of the GPU rules apply) three ops issued at 50 us each on the host take 150 us,
    # more than the device's 111.4 us: the step is host-bound
    p = predict_table(THREE, hand_profile("cuda", launch_s=50e-6), "fp32", channels_last=True)
    assert p.latency_ms == pytest.approx(0.150) and p.host_bound
    assert p.notes and "host-bound" in p.notes[0]


@pytest.mark.parametrize("kind, category, groups, in_shape, op, expected", [
    ("conv2d", "conv", 1, "8x64x56x56", "aten.convolution", "conv_dense"),
    ("conv2d", "conv", 64, "8x64x56x56", "aten.convolution", "conv_depthwise"),
    ("conv2d", "conv", 32, "8x128x56x56", "aten.convolution", "conv_grouped"),
    ("conv_transpose2d", "conv", 1, "8x64x56x56", "aten.convolution", "conv_dense"),
    ("linear", "linear", 1, "100x768", "aten.addmm", "matmul"),
    ("linear", "linear", 1, "12x197x64", "aten.bmm", "matmul"),
    ("attention", "linear", 1, "1x12x197x64", "F.scaled_dot_product_attention", "attention"),
    ("softmax", "activation", 1, "1x12x197x197", "F.scaled_dot_product_attention", "attention"),
    ("batchnorm2d", "norm", 1, "8x64x56x56", "aten.native_batch_norm", "norm"),
    ("layer_norm", "norm", 1, "8x197x768", "aten.native_layer_norm", "norm"),
    ("gelu", "activation", 1, "8x197x3072", "aten.gelu", "elementwise"),
    ("add", "elementwise", 1, "8x64x56x56", "aten.add", "elementwise"),
    ("maxpool2d", "pool", 1, "8x64x112x112", "aten.max_pool2d_with_indices", "pool"),
    ("adaptive_avgpool2d", "pool", 1, "8x2048x7x7", "F.adaptive_avg_pool2d", "pool"),
    ("upsample_bilinear", "pool", 1, "8x21x28x28", "aten.upsample_bilinear2d", "resample"),
    ("grid_sample", "pool", 1, "8x3x64x64", "aten.grid_sampler_2d", "resample"),
    ("data_movement", "other", 1, "8x56x56x96", "aten.constant_pad_nd", "data_movement"),
    ("concat", "other", 1, "8x1x768", "aten.cat", "data_movement"),
])
def test_op_class(kind, category, groups, in_shape, op, expected):
    assert op_class(kind, category, op, groups, in_shape) == expected


def test_views_and_attention_parts_are_free():
    table = pd.DataFrame([
        row("flat", "flatten", "other", "8x2048x1x1", "8x2048", 0, 0, 65_536, 65_536, op="aten.view"),
        row("attn", "attention", "linear", "8x12x197x64", "8x12x197x64", 10**9, 0, 3 * 10**6, 10**6,
            op="F.scaled_dot_product_attention"),
        row("attn", "softmax", "activation", "8x12x197x197", "8x12x197x197", 10**7, 0, 10**7, 10**7,
            op="F.scaled_dot_product_attention"),
    ])
    p = predict_table(table, hand_profile(), "fp32")
    assert list(p.table.bound) == ["free", "compute", "free"]
    # only the attention kernel counts: 2e9 flops / 1e12 = 2 ms (> 4e6 B / 1e11 = 0.04 ms) + 1 us
    assert p.latency_ms == pytest.approx(2.001)


# conv (out 1x64x56x56, fp32: 802,816 B), then batch norm, relu and a residual add (reads the relu's output and
# the block's input, 802,816 B each), then another conv
BLOCK = pd.DataFrame([
    row("conv", "conv2d", "conv", "1x64x56x56", "1x64x56x56", 115_605_504, 0, 950_272, 802_816),
    row("bn", "batchnorm2d", "norm", "1x64x56x56", "1x64x56x56", 200_704, 0, 803_328, 802_816),
    row("relu", "relu", "activation", "1x64x56x56", "1x64x56x56", 200_704, 0, 802_816, 802_816),
    row("add", "add", "elementwise", "1x64x56x56", "1x64x56x56", 200_704, 0, 1_605_632, 802_816),
    row("conv2", "conv2d", "conv", "1x64x56x56", "1x64x56x56", 115_605_504, 0, 950_272, 802_816),
])


def test_compiled_fuses_memory_bound_runs():
    w = work(BLOCK, "cpu", "fp32", compiled=True)
    assert list(w.state) == ["run", "run", "fused", "fused", "run"]
    # one kernel: bn's reads 803,328 + relu's extra 0 + add's extra 1,605,632 - 802,816 = 802,816,
    # + the add's writes 802,816 = 2,408,960 B; eager, the three kernels move 803,328 + 1,605,632 (reads of bn and
    # add) + 802,816 x 4 (relu's read, the three writes) = 5,620,224 B
    assert w.moved[1] == 2_408_960
    eager = work(BLOCK, "cpu", "fp32")
    assert eager.moved[1:4].sum() == 803_328 + 1_605_632 + 802_816 * 4
    p = predict_table(BLOCK, hand_profile(), "fp32", compiled=True)
    assert list(p.table.bound) == ["compute", "memory", "fused", "fused", "compute"]
    assert p.table.predicted_ms[1] == pytest.approx((1 + 24.0896) * 1e-3)  # 1 us + 2,408,960 B / 1e11


def test_gpu_rules_pad_channels_and_charge_nchw_transposes():
    stem = THREE.iloc[:1]
    # 3 input channels padded to TENSOR_CORE_ALIGN = 8 on the tensor cores: x 8/3; 64 outputs need no padding
    assert tensor_core_padding(stem, ["conv_dense"])[0] == pytest.approx(8 / 3)
    fp16 = stem.assign(bytes_read=304_640, bytes_written=1_605_632)  # the same conv with 2-byte elements
    nhwc = work(fp16, "cuda", "fp16", channels_last=True)
    nchw = work(fp16, "cuda", "fp16", channels_last=False)
    assert nhwc.flops[0] == pytest.approx((2 * 21_676_032 + 802_816) * 8 / 3)
    # NCHW, a 3x3 window: input (150,528) and output (802,816) elements, 2 bytes each, read and written once more
    assert nchw.transposed[0] == 2 * 2 * (3 * 224 * 224 + 64 * 112 * 112) and nhwc.transposed[0] == 0
    assert nchw.traffic()[0] - nhwc.traffic()[0] == nchw.transposed[0]
    assert work(fp16.assign(kernel="1x1"), "cuda", "fp16").transposed[0] == 0  # a 1x1 conv is a GEMM in NCHW
    assert work(fp16, "cpu", "fp16").flops[0] == 2 * 21_676_032 + 802_816  # no padding on a CPU


def test_autocast_rules():
    # a layer norm feeding an add: under autocast the norm runs in fp32 and the add on the fp32 stream
    table = pd.DataFrame([
        row("norm", "layer_norm", "norm", "8x197x768", "8x197x768", 6_053_376, 0, 2_421_248, 2_420_736),
        row("add", "add", "elementwise", "8x197x768", "8x197x768", 1_210_368, 0, 4_841_472, 2_420_736),
    ])
    w = work(table, "cuda", "fp16")
    assert list(w.autocast_fp32) == [True, False] and list(w.fp32_stream) == [False, True]
    assert list(w.traffic()) == pytest.approx([4_841_984 * constants.AUTOCAST_FP32_TRAFFIC,
                                               7_262_208 * constants.FP32_STREAM_TRAFFIC])
    for other in (work(table, "cuda", "fp32"), work(table, "cpu", "fp16")):
        assert not other.autocast_fp32.any() and not other.fp32_stream.any()
    # compiled: one kernel; the norm's fp32 tensors twice its fp16 bytes, the add on the fp32 stream
    compiled = work(table, "cuda", "fp16", compiled=True)
    stream = constants.FP32_STREAM_TRAFFIC
    assert list(compiled.state) == ["run", "fused"]
    assert compiled.moved[0] == pytest.approx(2 * 2_421_248 + max(4_841_472 * stream - 2 * 2_420_736, 0)
                                              + 2_420_736 * stream)


def test_datasheet_profile_uses_the_constants():
    from cnncost.bench.devices import by_key
    from cnncost.speed.constants import datasheet_profile
    h100 = datasheet_profile(by_key("h100-sxm"))
    rate = h100.rate("bf16", "conv_dense")
    assert rate.flops_per_s == pytest.approx(989.5e12 * constants.COMPUTE_EFFICIENCY["conv_dense"])
    assert rate.bytes_per_s == pytest.approx(3350e9 * constants.BANDWIDTH_EFFICIENCY)
    assert h100.rate("bf16", "norm").flops_per_s == pytest.approx(67e12)  # CUDA-core classes: the FP32 peak
    assert not h100.measured and h100.launch_s == constants.LAUNCH_S


# -- bad input: one line each ----------------------------------------------------------------------------------

def test_unknown_device():
    from cnncost.speed.estimate import resolve
    with pytest.raises(CnnCostError, match="unknown device 'h900-sxm'; did you mean h"):
        resolve("h900-sxm")


def test_dtype_the_device_lacks():
    from cnncost.speed.estimate import check_dtype, resolve
    with pytest.raises(CnnCostError, match="NVIDIA V100 SXM2 has no bf16 rates"):
        check_dtype(resolve("v100"), "bf16")


def measured_profile(tmp_path, **changes):
    """A measured CPU profile file that says it comes from this machine, torch and thread count, with changes."""
    from cnncost.speed.device import installed_torch, this_machine
    from cnncost.speed.estimate import default_threads
    p = hand_profile(measured=True, machine=this_machine(), torch=installed_torch(), threads=default_threads())
    for k, v in changes.items():
        setattr(p, k, v)
    path = tmp_path / "profile.json"
    path.write_text(p.to_json())
    return str(path)


def test_profile_from_another_machine(tmp_path):
    from cnncost.speed.estimate import resolve
    assert resolve(measured_profile(tmp_path)).measured
    with pytest.raises(CnnCostError, match="was measured on 'arm64 Some Other CPU', this machine is"):
        resolve(measured_profile(tmp_path, machine="arm64 Some Other CPU"))


def test_profile_from_another_torch(tmp_path):
    from cnncost.speed.estimate import resolve
    with pytest.raises(CnnCostError, match="was measured with torch 1.13.0"):
        resolve(measured_profile(tmp_path, torch="1.13.0"))


def test_profile_with_other_threads(tmp_path):
    from cnncost.speed.estimate import default_threads, resolve
    with pytest.raises(CnnCostError, match="measured with 64 CPU thread"):
        resolve(measured_profile(tmp_path, threads=64))
    assert resolve(measured_profile(tmp_path), threads=default_threads()).measured


def test_not_a_profile(tmp_path):
    from cnncost.speed.estimate import resolve
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "something else"}')
    with pytest.raises(CnnCostError, match="is not a cnncost device profile"):
        resolve(str(bad))


# -- the CLI -----------------------------------------------------------------------------------------------------

def test_cli_json(tmp_path, capsys):
    from cnncost.cli import run
    out = tmp_path / "p.json"
    assert run(["predict", "resnet18", "--device", "rtx4090", "--dtype", "fp16", "--batch", "8", "-o",
                str(out)]) == 0
    data = json.loads(out.read_text())
    assert {"model", "device", "dtype", "batch", "latency_ms", "img_per_s", "rows", "by_class"} <= set(data)
    assert data["batch"] == 8 and data["img_per_s"] == pytest.approx(8 / (data["latency_ms"] / 1e3))
    assert sum(r["predicted_ms"] for r in data["rows"]) == pytest.approx(data["latency_ms"]) or data["host_bound"]
    assert {"name", "op_class", "flops", "bytes", "bound", "predicted_ms"} <= set(data["rows"][0])


@pytest.mark.parametrize("args, message", [
    (["--device", "h900-sxm"], "unknown device 'h900-sxm'"),
    (["--device", "v100", "--dtype", "bf16"], "has no bf16 rates"),
    (["--device", "rtx4090", "--threads", "2"], "--threads applies to a CPU profile"),
    (["--device", "rtx4090", "--by", "stage"], "--by must be layer or class"),
])
def test_cli_bad_input(args, message, capsys):
    from cnncost.cli import run
    assert run(["predict", "resnet18", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cnncost: error:") and message in err[0]


# -- the devices table's new entries and usable memory --------------------------------------------------------

@pytest.mark.parametrize("name, key", [
    ("NVIDIA GeForce RTX 5090", "rtx5090"), ("NVIDIA B200", "b200"),
    ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "rtx-pro-6000"),
    ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "rtx-pro-6000"),
    ("NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition", "rtx-pro-6000-maxq"),
])
def test_new_devices_match(name, key):
    from cnncost.bench import devices
    assert devices.match(name).key == key


def test_usable_memory_is_below_the_nominal_and_sourced():
    from cnncost.bench import devices
    for d in devices.DEVICES:
        usable, source = devices.USABLE_MEMORY[d.key]
        assert 0.9 * devices.MEMORY_GIB[d.key] < usable < devices.MEMORY_GIB[d.key]
        assert source.startswith(("torch: https://", "estimate: "))
    assert devices.memory_bytes("rtx5090") == int(31.36 * 2**30)  # the RTX 5090's OOM message: 31.36 GiB


# -- the library functions other commands and the report use ----------------------------------------------------

def test_speed_columns_agree_for_analytic_and_traced_tables():
    import cnncost
    from cnncost.speed.estimate import speed_columns
    from cnncost.trace import count
    analytic = speed_columns(cnncost.analyze("resnet18", batch=8, dtype="fp16"), "h100-sxm", "fp16")
    traced = speed_columns(count("resnet18", batch=8, dtype="fp16"), "h100-sxm", "fp16")
    assert set(analytic) == {"device", "dtype", "latency_ms", "img_per_s", "host_bound"}
    assert analytic["img_per_s"] == pytest.approx(traced["img_per_s"], rel=0.02)


def test_report_tables():
    from cnncost.speed.tables import lecture_speeds, macs_figures, macs_versus_speed
    table = lecture_speeds(("resnet18", "resnet50"), ("rtx4090",), batch=8)
    assert list(table.columns) == ["model", "size", "gmacs", "params_m", "rtx4090_img_per_s", "rtx4090_tflop_per_s"]
    ratios = macs_versus_speed(table, ("rtx4090",)).set_index("model")
    assert ratios.loc["resnet50", "macs_ratio"] == 1.0 and ratios.loc["resnet18", "rtx4090_speed_ratio"] > 1
    assert macs_figures(table, ("rtx4090",))["rtx4090"]["tflop_per_s_spread"] >= 1
