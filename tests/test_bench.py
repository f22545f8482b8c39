"""The benchmark runner on the CPU (what CI runs), the device table, the CSV writer and the plots."""
import csv
import os
import signal

import pytest
import torch

from cnncost.bench import csvio, devices, plots, runner
from cnncost.bench.counts import macs_per_image, model_source
from cnncost.bench.runner import Settings, check, sweep
from cnncost.errors import CnnCostError

TINY = Settings(device="cpu", warmup=1, iters=2, repeats=2, size=32)
cuda = pytest.mark.cuda
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def rows():
    """resnet18 at 32 px, batch 1 and 2, on the CPU: measured once for the whole module."""
    return list(sweep(["resnet18"], [1, 2], TINY))


# -- devices ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name, key", [
    ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA H100 PCIe", "h100-pcie"), ("NVIDIA H100 NVL", "h100-nvl"),
    ("NVIDIA H200", "h200"), ("NVIDIA H200 NVL", "h200-nvl"), ("NVIDIA A100-SXM4-80GB", "a100-80gb-sxm"),
    ("NVIDIA A100 80GB PCIe", "a100-80gb-pcie"), ("NVIDIA A100-SXM4-40GB", "a100-40gb"),
    ("NVIDIA A100-PCIE-40GB", "a100-40gb"), ("NVIDIA L4", "l4"), ("NVIDIA L40S", "l40s"),
    ("NVIDIA GeForce RTX 4090", "rtx4090"), ("Tesla V100-SXM2-16GB", "v100"), ("Tesla V100-PCIE-32GB", "v100-pcie"), ("Tesla T4", "t4"),
    ("NVIDIA A10", "a10"), ("AMD Instinct MI300X", "mi300x"),
])
def test_device_names_match_the_table(name, key):
    assert devices.match(name).key == key


def test_unknown_devices_match_nothing():
    assert devices.match("AMD EPYC 7763 64-Core Processor") is None
    assert devices.match("NVIDIA RTX A1000") is None and devices.match("NVIDIA GH100X") is None


def test_dense_peaks_are_half_the_sparse_data_sheet_figures():
    h100 = devices.by_key("h100-sxm")
    assert h100.peak_tflops("bf16") == pytest.approx(1979 / 2, abs=0.5)  # data sheet: 1,979 with sparsity
    assert h100.peak_tflops("tf32") == pytest.approx(989 / 2, abs=0.5)
    assert devices.by_key("h100-pcie").peak_tflops("fp16") == pytest.approx(1513 / 2, abs=0.5)
    assert devices.by_key("a100-80gb-sxm").peak_tflops("bf16") == 312  # A100 data sheet, dense
    assert devices.by_key("v100").peak_tflops("bf16") is None  # no bf16 tensor cores on Volta


def test_every_device_has_a_source_and_sane_peaks():
    for d in devices.DEVICES:
        assert d.source and d.bandwidth_gb_s > 0
        assert d.fp16 >= d.fp32 and (d.tf32 is None or d.tf32 >= d.fp32)


def test_unknown_device_key_names_close_ones():
    assert devices.by_key("H100").key == "h100-sxm"  # a device name works too
    with pytest.raises(CnnCostError, match="did you mean l40s"):
        devices.by_key("l40")
    with pytest.raises(CnnCostError, match="unknown dtype"):
        devices.by_key("l4").peak_tflops("fp8")


# -- the CSV ---------------------------------------------------------------------------------


def row(**values):
    """A schema row with a few fields set."""
    return {**dict.fromkeys(csvio.SCHEMA, ""), **values}


def test_rows_are_appended_under_one_header(tmp_path):
    path = tmp_path / "bench.csv"
    csvio.append_rows(path, [row(model="a", batch=1)])
    csvio.append_rows(path, [row(model="b", batch=2, error="OutOfMemoryError: CUDA out of memory, tried 2 GiB")])
    lines = path.read_text().splitlines()
    assert lines[0].split(",") == list(csvio.SCHEMA) and len(lines) == 3
    df = csvio.read_rows(path)
    assert list(df.model) == ["a", "b"] and df.error[0] == "" and "out of memory" in df.error[1]
    assert not list(tmp_path.glob(".*tmp"))


def test_a_foreign_csv_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(CnnCostError, match="different header"):
        csvio.append_rows(path, [row(model="x")])
    assert path.read_text() == "a,b\n1,2\n"
    with pytest.raises(CnnCostError, match="not a cnncost bench CSV"):
        csvio.read_rows(path)
    with pytest.raises(CnnCostError, match="does not exist"):
        csvio.check_target(tmp_path / "missing" / "x.csv")


def test_ctrl_c_during_a_write_waits_until_the_file_is_whole(tmp_path):
    path = tmp_path / "bench.csv"
    with pytest.raises(KeyboardInterrupt):
        with csvio.interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            csvio.append_rows(path, [row(model="kept")])
    assert list(csv.DictReader(path.open()))[0]["model"] == "kept"


# -- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("settings, message", [
    (Settings(dtype="tf32"), "tf32 needs --device cuda"),
    (Settings(cuda_graphs=True), "--cuda-graphs needs --device cuda"),
    (Settings(mode="eval"), "unknown mode"),
    (Settings(dtype="int8"), "unknown dtype"),
    (Settings(iters=0), "--iters"),
    (Settings(device="tpu"), "unknown device"),
    (Settings(compile=True, warmup=1), "--compile needs --warmup 2"),
    (Settings(compile=True, compile_mode="fast"), "unknown compile mode"),
    (Settings(threads=0), "--threads must be at least 1"),
])
def test_bad_settings_are_one_line_errors(settings, message):
    with pytest.raises(CnnCostError, match=message):
        check(settings)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(CnnCostError, match="CUDA is not available here.*use --device cpu"):
        check(Settings(device="cuda"))


# -- what one image costs -----------------------------------------------------------------------


def test_forward_macs_agree_with_torchvision_metadata():
    import torchvision
    for name in ("resnet50", "mobilenet_v2"):  # analytic spec; our tracer (not registered analytically)
        ops = torchvision.models.get_model_weights(name).DEFAULT.meta["_ops"]  # GMACs, 3 decimals
        assert macs_per_image(name, 224)[0] / 1e9 == pytest.approx(ops, abs=5e-4)


def test_training_count_is_three_forwards_less_the_first_grad_input():
    forward, train = macs_per_image("mobilenet_v2", 224)[0], macs_per_image("mobilenet_v2", 224, train=True)[0]
    first = (112 * 112 * 32) * (3 * 3 * 3)  # stem conv 3->32, 3x3, stride 2: 10,838,016 MACs
    assert train == 3 * forward - first


def test_aliases_resolve_and_unknown_models_are_errors():
    assert model_source("resnext50").name == "resnext50_32x4d"
    with pytest.raises(CnnCostError, match="did you mean resnet50"):
        model_source("resnet5O")


# -- the runner on the CPU ----------------------------------------------------------------------


def test_rows_have_the_schema_and_consistent_numbers(rows):
    assert [r["batch"] for r in rows] == [1, 2]
    for r in rows:
        assert tuple(r) == csvio.SCHEMA and r["error"] == ""
        assert r["img_per_s_min"] <= r["img_per_s"] <= r["img_per_s_max"] and r["img_per_s"] > 0
        assert 0 < r["latency_ms_p50"] <= r["latency_ms_p90"]
        assert r["tflops_achieved"] == round(2 * r["macs_per_image"] * r["img_per_s"] / 1e12, 4)
        assert r["mfu"] == "" and r["peak_mem_mb"] == ""  # no device peak or allocator statistics on a CPU
        assert (r["device"], r["torch"], r["dtype"], r["mode"]) == ("cpu", torch.__version__, "fp32", "infer")


def test_macs_per_image_agree_with_torchs_counter_on_the_real_model(rows):
    from torch.utils.flop_counter import FlopCounterMode
    import torchvision
    model = torchvision.models.resnet18(weights=None).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    assert rows[0]["macs_per_image"] == counter.get_total_flops() // 2  # torch counts 2 FLOPs per MAC


def test_a_failing_batch_is_a_row_and_the_sweep_goes_on(monkeypatch):
    real = runner.measure

    def out_of_memory_at_2(prepared, settings, batch):
        if batch == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB\nmore detail")
        return real(prepared, settings, batch)

    monkeypatch.setattr(runner, "measure", out_of_memory_at_2)
    got = list(sweep(["resnet18"], [1, 2, 3], Settings(warmup=0, iters=1, repeats=1, size=32)))
    assert [r["error"] for r in got] == ["", "OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB", ""]
    assert got[1]["img_per_s"] == "" and got[1]["tflops_achieved"] == "" and got[2]["img_per_s"] > 0


def test_min_input_size_is_the_smallest_the_forward_accepts_on_meta():
    # resnet18 ends in an adaptive pool and pads every conv: 1 px runs. vgg16 halves the map in five 2x2 max
    # pools (floor): 32 px is the least that leaves 1x1 for the last one, 31 px leaves 0.
    assert runner.min_input_size(model_source("resnet18")) == 1
    assert runner.min_input_size(model_source("vgg16")) == 32
    with pytest.raises(CnnCostError, match="vgg16 needs an input of at least 32 px"):
        runner.check_size(model_source("vgg16"), 31)
    runner.check_size(model_source("vgg16"), 32)  # accepted: nothing raised


def row_of(spread_min: float, spread_max: float, **values):
    """A measured row with its fastest and slowest block."""
    return {"model": "resnet18", "batch": 8, "repeats": 3, "error": "", "img_per_s_min": spread_min,
            "img_per_s_max": spread_max, **values}


def test_noisy_repeats_are_named_in_a_warning():
    assert runner.noise_warning([row_of(100.0, 110.0)]) is None  # 1.1x: ordinary
    assert runner.noise_warning([row_of(10.0, 23.0, repeats=1)]) is None  # one block: no spread to judge
    warning = runner.noise_warning([row_of(100.0, 110.0), row_of(12.1, 27.83, batch=1)])
    assert "spread 2.3x" in warning and "batch 1: 12.1 to 27.83" in warning and "1 of 2 row(s)" in warning


def test_training_rows_count_forward_and_backward():
    threads = torch.get_num_threads()
    (r,) = sweep(["resnet18"], [2], Settings(mode="train", warmup=0, iters=1, repeats=1, size=32,
                                             channels_last=True, threads=1))
    assert r["threads"] == 1 and torch.get_num_threads() == threads  # set for the sweep, restored after
    first = (16 * 16 * 64) * (7 * 7 * 3)  # stem conv 3->64, 7x7, stride 2 at 32 px: 2,408,448 MACs
    assert r["error"] == "" and r["step_macs_per_image"] == 3 * r["macs_per_image"] - first


# -- plots ---------------------------------------------------------------------------------------


def sample_csv(path, mfu=""):
    """A hand-written bench CSV: three models, two batch sizes, one error row."""
    data = [("resnet50", 4_089_184_256, {8: 800.0, 32: 1200.0}), ("efficientnet_b0", 401_669_732, {8: 900.0, 32: 2000.0}),
            ("vgg16", 15_470_264_320, {8: 200.0, 32: 260.0})]
    rows = [row(model=m, mode="infer", batch=b, size=224, dtype="bf16", channels_last=True, compile=False,
                cuda_graphs=False, img_per_s=v, macs_per_image=macs, step_macs_per_image=macs,
                tflops_achieved=round(2 * macs * v / 1e12, 4), mfu=mfu and round(2 * macs * v / 1e12 / 989.5, 4),
                device="cuda" if mfu else "cpu", device_name="NVIDIA H100 80GB HBM3" if mfu else "Some CPU")
            for m, macs, rates in data for b, v in rates.items()]
    rows.append(row(model="vgg16", mode="infer", batch=256, device="cpu", device_name="Some CPU",
                    error="OutOfMemoryError: CUDA out of memory"))
    csvio.append_rows(path, rows)
    return path


@pytest.mark.parametrize("mfu, last", [("", "tflops"), ("yes", "mfu")])
def test_plots_come_from_the_csv_alone_and_are_deterministic(tmp_path, mfu, last):
    path = sample_csv(tmp_path / "bench.csv", mfu)
    first = {p.name: p.read_bytes() for p in plots.plot_csv(path)}
    assert sorted(first) == sorted(f"bench-{n}.{f}" for n in ("throughput-vs-batch", "throughput-vs-gmacs", last)
                                   for f in ("png", "svg"))
    again = {p.name: p.read_bytes() for p in plots.plot_csv(path)}
    assert again == first
    svg = first["bench-throughput-vs-gmacs.svg"].decode()
    assert "<dc:date>" not in svg and "FLOPs are not speed" in svg and "efficientnet_b0" in svg


def labelled_ticks(axis, limits) -> list[str]:
    """The tick labels a log axis shows inside its limits."""
    lo, hi = sorted(limits)
    shown = [v for v in axis.get_majorticklocs() if lo <= v <= hi]
    return [label for label in axis.get_major_formatter().format_ticks(shown) if label]


def test_log_axes_spanning_less_than_a_decade_have_labelled_ticks(tmp_path):
    # resnet18 on a CPU at batch 1 and 8: 31 to 38 images/s, no power of ten on the y axis
    data = [row(model="resnet18", mode="infer", batch=b, size=224, dtype="fp32", channels_last=False, compile=False,
                cuda_graphs=False, img_per_s=v, macs_per_image=1_814_073_344, device="cpu", device_name="Some CPU",
                threads=2) for b, v in ((1, 31.0), (8, 38.0))]
    csvio.append_rows(tmp_path / "bench.csv", data)
    df = plots.measured(tmp_path / "bench.csv")
    plt = plots.pyplot()
    for draw in (plots.throughput_vs_batch, plots.throughput_vs_gmacs):
        fig, ax = plt.subplots()
        draw(df, ax)
        fig.canvas.draw()
        assert len(labelled_ticks(ax.yaxis, ax.get_ylim())) >= 2, draw.__name__
        if draw is plots.throughput_vs_gmacs:
            assert len(labelled_ticks(ax.xaxis, ax.get_xlim())) >= 2
        plt.close(fig)


def test_log_ticks_step_1_2_5_then_1_to_9_and_leave_wide_axes_alone():
    from cnncost.figures import log_ticks
    assert log_ticks(0.5, 300) is None  # 1, 10, 100 label it
    assert log_ticks(15, 120) == [20, 50, 100]
    assert log_ticks(2.5, 4.5) == [3, 4]
    assert len(log_ticks(31, 38)) >= 2


def test_plot_labels_say_how_rows_were_run():
    from types import SimpleNamespace as Row
    flags = dict(dtype="bf16", channels_last=True, cuda_graphs=False, mode="infer")
    assert plots.config(Row(compile=True, compile_mode="max-autotune", **flags)) == "bf16 CL compiled max-autotune infer"
    assert plots.config(Row(compile=True, compile_mode="default", **flags)) == "bf16 CL compiled infer"
    assert plots.config(Row(compile=False, compile_mode="", **{**flags, "cuda_graphs": True})) == "bf16 CL graphs infer"


def test_plots_need_measured_rows(tmp_path):
    path = tmp_path / "bad.csv"
    csvio.append_rows(path, [row(model="x", batch=1, error="RuntimeError: boom")])
    with pytest.raises(CnnCostError, match="no measured rows"):
        plots.plot_csv(path)
    with pytest.raises(CnnCostError, match="no such CSV"):
        plots.plot_csv(tmp_path / "none.csv")


# -- on a GPU (skipped without one) ------------------------------------------------------------------


@cuda
@needs_cuda
def test_cuda_rows_have_memory_and_mfu():
    settings = Settings(device="cuda", dtype="bf16", channels_last=True, warmup=2, iters=3, repeats=2, size=64)
    (r,) = sweep(["resnet18"], [8], settings)
    assert r["error"] == "" and r["peak_mem_mb"] > 0 and r["cudnn"] != ""
    if devices.match(r["device_name"]):
        assert 0 < r["mfu"] < 1


@cuda
@needs_cuda
def test_cuda_graphs_and_out_of_memory():
    settings = Settings(device="cuda", cuda_graphs=True, warmup=2, iters=3, repeats=1, size=64)
    graph, huge, after = sweep(["resnet18"], [4, 2**20, 4], settings)
    assert graph["error"] == "" and after["error"] == "" and "memory" in huge["error"].lower()
