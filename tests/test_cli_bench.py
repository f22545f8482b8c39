"""`cnncost bench`, `plot` and `train-cost` as a user runs them: files, formats, units and every bad input."""
import csv
import json

import pytest
import torch

from cnncost.bench import csvio, runner
from cnncost.cli import run

FAST = ["--size", "32", "--warmup", "0", "--iters", "1", "--repeats", "1", "--device", "cpu"]


def cli(capsys, *argv):
    """Run the CLI in-process; return (exit status, stdout, stderr)."""
    status = run(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def bench_csv(tmp_path_factory):
    """Two models x two batch sizes on the CPU, appended to a CSV by two runs of the command."""
    path = tmp_path_factory.mktemp("bench") / "bench.csv"
    for model in ("resnet18", "squeezenet1_0"):
        assert run(["bench", model, "--batch", "1,2", "--out", str(path), "--format", "json", *FAST]) == 0
    return path


def test_rows_are_appended_with_one_header(bench_csv):
    with bench_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert bench_csv.read_text().count("img_per_s,") == 1 and tuple(rows[0]) == csvio.SCHEMA
    assert [(r["model"], r["batch"]) for r in rows] == [("resnet18", "1"), ("resnet18", "2"),
                                                        ("squeezenet1_0", "1"), ("squeezenet1_0", "2")]
    assert all(r["error"] == "" and float(r["img_per_s"]) > 0 and r["device"] == "cpu" for r in rows)


def test_json_has_exact_integers_and_flops_doubles(capsys):
    status, out, _ = cli(capsys, "bench", "resnet18", "--batch", "1", "--format", "json", "--unit", "flops", *FAST)
    (row,) = json.loads(out)
    assert status == 0 and "macs_per_image" not in row
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode
    with torch.device("meta"), FlopCounterMode(display=False) as counter:
        torchvision.models.resnet18().eval()(torch.empty(1, 3, 32, 32))
    assert row["flops_per_image"] == counter.get_total_flops()  # torch counts FLOPs (2 per MAC) of conv + linear
    assert isinstance(row["flops_per_image"], int) and isinstance(row["step_flops_per_image"], int)


def test_csv_on_stdout_has_the_file_schema(capsys):
    status, out, _ = cli(capsys, "bench", "resnet18", "--batch", "1", "--format", "csv", *FAST)
    assert status == 0 and out.splitlines()[0].split(",") == list(csvio.SCHEMA)


def test_table_names_units_and_no_progress_off_a_terminal(capsys):
    status, out, err = cli(capsys, "bench", "resnet18", "--batch", "1", *FAST)
    assert status == 0 and "img_per_s" in out and "macs_per_image" in out and "MACs per image" in out
    assert "resnet18 batch 1" not in err + out  # the progress bar is drawn only on a terminal (stderr)
    status, out, _ = cli(capsys, "bench", "resnet18", "--batch", "1", "--unit", "flops", "--format", "md", *FAST)
    assert status == 0 and "flops_per_image" in out and "FLOPs per image" in out and "macs_per_image" not in out


def out_of_memory(prepared, settings, batch):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_exit_1_when_every_row_failed(capsys, monkeypatch):
    monkeypatch.setattr(runner, "measure", out_of_memory)
    status, out, err = cli(capsys, "bench", "resnet18", "--batch", "1,2", "--format", "json", *FAST)
    assert status == 1 and "every row failed" in err and "OutOfMemoryError" in err
    assert [r["error"] for r in json.loads(out)] == ["OutOfMemoryError: CUDA out of memory. Tried to allocate "
                                                     "20.00 GiB"] * 2


def test_a_narrow_table_keeps_the_error_column_last(capsys, monkeypatch):
    monkeypatch.setattr(runner, "measure", out_of_memory)
    monkeypatch.setenv("COLUMNS", "90")
    status, out, _ = cli(capsys, "bench", "resnet18", "--batch", "1", *FAST)
    caption = " ".join(out.split("left out to fit 90 characters:")[1].split("(widen")[0].split())
    left_out = caption.replace(" ", "").split(",")
    assert status == 1 and "error" not in left_out and "OutOfMemoryEr" in out
    assert {"latency_ms_p90", "mfu"} <= set(left_out)  # dropped before it


def test_min_input_size_comes_from_the_model(capsys):
    status, _, err = cli(capsys, "bench", "alexnet", "--batch", "1", *FAST)  # FAST asks for 32 px
    assert status == 2 and "alexnet needs an input of at least 63 px (found on meta)" in err
    status, out, _ = cli(capsys, "bench", "resnet18", "--batch", "1", "--format", "json", *FAST[:-2],
                         "--size", "8", "--device", "cpu")
    assert status == 0 and json.loads(out)[0]["size"] == 8 and json.loads(out)[0]["error"] == ""


def test_plot_from_the_csv(capsys, bench_csv):
    status, out, _ = cli(capsys, "plot", str(bench_csv), "--formats", "svg")
    names = sorted(line.rsplit("/", 1)[-1] for line in out.split())
    assert status == 0 and names == ["bench-tflops.svg", "bench-throughput-vs-batch.svg", "bench-throughput-vs-gmacs.svg"]


def test_ctrl_c_keeps_every_finished_row(capsys, tmp_path, monkeypatch):
    real = runner.measure

    def interrupted_at_2(prepared, settings, batch):
        if batch == 2:
            raise KeyboardInterrupt
        return real(prepared, settings, batch)

    monkeypatch.setattr(runner, "measure", interrupted_at_2)
    path = tmp_path / "bench.csv"
    status, out, err = cli(capsys, "bench", "resnet18", "--batch", "1,2,4", "--out", str(path), *FAST)
    assert status == 130 and "1 finished row(s) kept" in err
    assert [r["batch"] for r in csv.DictReader(path.open())] == ["1"]
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize("argv, message", [
    (["bench", "resnet18", "--batch", "1,x"], "--batch wants positive integers"),
    (["bench", "resnet18", "--batch", "0"], "--batch wants positive integers"),
    (["bench", "resnet5O"], "did you mean resnet50"),
    (["bench", "resnet18", "--dtype", "tf32", "--device", "cpu"], "tf32 needs --device cuda"),
    (["bench", "resnet18", "--cuda-graphs", "--device", "cpu"], "--cuda-graphs needs --device cuda"),
    (["bench", "resnet18", "--mode", "eval"], "unknown mode"),
    (["bench", "resnet18", "--format", "xml"], "unknown format"),
    (["bench", "resnet18", "--unit", "gmacs"], "unknown unit"),
    (["bench", "resnet18", "--iters", "0", "--device", "cpu"], "--iters and --repeats >= 1"),
    (["bench", "resnet18", "--out", "/nonexistent/dir/b.csv"], "does not exist"),
    (["plot", "/nonexistent.csv"], "no such CSV"),
    (["train-cost", "resnet18", "--epochs", "0"], "must be positive"),
    (["train-cost", "resnet18", "--gpu", "h10"], "unknown device"),
    (["train-cost", "resnet18", "--mfu", "2"], "MFU must be"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    status, out, err = cli(capsys, *argv)
    assert status == 2 and message in err and err.count("\n") == 1 and out == ""


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_writes_nothing(capsys, tmp_path):
    path = tmp_path / "bench.csv"
    status, out, err = cli(capsys, "bench", "resnet18", "--device", "cuda", "--out", str(path))
    assert status == 2 and "CUDA is not available" in err and err.count("\n") == 1 and not path.exists()


def test_a_foreign_csv_is_left_untouched(capsys, tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("x,y\n1,2\n")
    status, _, err = cli(capsys, "bench", "resnet18", "--out", str(path), *FAST)
    assert status == 2 and "different header" in err and path.read_text() == "x,y\n1,2\n"


def test_train_cost_json(capsys):
    status, out, _ = cli(capsys, "train-cost", "resnet50", "--epochs", "90", "--format", "json")
    data = json.loads(out)
    summary = data["summary"]
    assert status == 0 and summary["images"] == 90 * 1_281_167
    assert summary["forward_macs_per_image"] == 4_089_184_256  # torchvision _ops 4.089 GMACs
    first = (112 * 112 * 64) * (7 * 7 * 3)  # stem conv: 118,013,952 MACs, no grad-input
    assert summary["train_macs_per_image"] == 3 * summary["forward_macs_per_image"] - first
    assert summary["total_train_macs"] == summary["images"] * summary["train_macs_per_image"]
    assert {k["factor"] for k in data["kinds"]} >= {"2F", "3F", "7F", "F+A"}
    assert data["estimates"][0]["mfu"] == 0.3 and "H100 SXM" in data["estimates"][0]["basis"]


def test_train_cost_in_flops_and_markdown(capsys):
    status, out, _ = cli(capsys, "train-cost", "resnet18", "--unit", "flops", "--format", "md", "--epochs", "1",
                         "--dataset-size", "1000", "--gpu", "a100-80gb-sxm", "--mfu", "0.5")
    assert status == 0 and "total_train_flops" in out and "train_macs" not in out and "A100 80GB SXM" in out


def test_train_cost_uses_a_measured_row(capsys, tmp_path):
    path = tmp_path / "bench.csv"
    row = {**dict.fromkeys(csvio.SCHEMA, ""), "model": "resnet18", "mode": "train", "size": 224, "dtype": "bf16",
           "batch": 128, "img_per_s": 1000.0, "device_name": "NVIDIA L4"}
    csvio.append_rows(path, [row])
    status, out, _ = cli(capsys, "train-cost", "resnet18", "--csv", str(path), "--format", "json")
    measured = json.loads(out)["estimates"][0]
    assert status == 0 and measured["gpu_hours"] == pytest.approx(90 * 1_281_167 / 1000 / 3600, abs=1e-3)  # 32.03


def test_devices_lists_dense_peaks_with_sources(capsys):
    status, out, _ = cli(capsys, "devices", "--format", "json")
    (rows,) = json.loads(out).values()
    h100 = next(r for r in rows if r["key"] == "h100-sxm")
    assert status == 0 and h100["bf16_tflop_per_s"] == pytest.approx(1979 / 2, abs=0.5)  # data sheet, sparse / 2
    assert all(r["source"] for r in rows)


def test_bench_runs_without_the_other_counters_plots_or_timm():
    """A GPU machine may have only torch and torchvision: `python -m cnncost bench` imports neither fvcore nor
    ptflops (verify, report), matplotlib (plot, report) nor timm (timm: models); here each import fails."""
    import subprocess
    import sys
    code = ("import sys, runpy\n"
            "for name in ('fvcore', 'ptflops', 'matplotlib', 'timm'):\n"
            "    sys.modules[name] = None  # import fails\n"
            f"sys.argv = ['cnncost', 'bench', 'resnet18', '--batch', '1', '-f', 'csv', *{FAST!r}]\n"
            "runpy.run_module('cnncost', run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    row = next(csv.DictReader(done.stdout.splitlines()))
    assert row["model"] == "resnet18" and row["error"] == "" and float(row["img_per_s"]) > 0


FACTORY = '''
from torch import nn


def make(width=8, channels=3):
    return nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, 10))


def gray(width=8):
    return make(width, channels=1)
'''


@pytest.fixture
def factory(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(FACTORY)
    return str(path)


def conv_linear_macs(size: int, cin: int, width: int) -> int:
    """A 3x3 same-padded conv cin -> width at size x size, then a linear width -> 10."""
    return size * size * width * 3 * 3 * cin + width * 10


def test_bench_takes_the_model_options_every_command_shares(capsys, factory):
    fast = ["--warmup", "0", "--iters", "1", "--repeats", "1", "--device", "cpu", "-f", "json"]
    status, out, _ = cli(capsys, "bench", f"{factory}:make", "--arg", "width=16", "--size", "32", "--batch", "2", *fast)
    (row,) = json.loads(out)
    assert status == 0 and row["macs_per_image"] == conv_linear_macs(32, 3, 16) == 442_528
    # two configurations of one factory, each with its own arguments
    status, out, _ = cli(capsys, "bench", f"{factory}:make[width=4]", f"{factory}:make[width=64]", "--size", "32",
                         "--batch", "1", *fast)
    assert [r["macs_per_image"] for r in json.loads(out)] == [conv_linear_macs(32, 3, 4), conv_linear_macs(32, 3, 64)]
    status, out, _ = cli(capsys, "bench", f"{factory}:gray", "--channels", "1", "--size", "28", "--batch", "2", *fast)
    assert json.loads(out)[0]["macs_per_image"] == conv_linear_macs(28, 1, 8) == 56_528
    # --input: its own batch and size, timed as given
    status, out, _ = cli(capsys, "bench", "resnet18", "--input", "3x3x64x64", "--mode", "train", *fast)
    (row,) = json.loads(out)
    assert (row["batch"], row["size"], row["error"]) == (3, 64, "")
    # resnet18 at 224 px: 1,814,073,344 conv + linear MACs (torchvision's _ops), 512,000 of them the fc; at 64 px
    # every feature map is 2/7 as wide: (1,814,073,344 - 512,000) x 4/49 + 512,000
    assert row["macs_per_image"] == (1_814_073_344 - 512_000) * 4 // 49 + 512_000 == 148_557_824
    status, _, err = cli(capsys, "bench", "resnet18", "--input", "3x3x64x64", "--batch", "2", *fast)
    assert status == 2 and "--input gives the whole input shape; it cannot be combined with --batch" in err


def test_train_cost_takes_the_model_options(capsys, factory):
    status, out, _ = cli(capsys, "train-cost", f"{factory}:make", "--arg", "width=16", "--size", "32", "-f", "json")
    summary = json.loads(out)["summary"]
    forward = conv_linear_macs(32, 3, 16)
    # the first conv needs no input gradient: 2F; the linear layer 3F
    assert summary["forward_macs_per_image"] == forward
    assert summary["train_macs_per_image"] == 2 * 32 * 32 * 16 * 27 + 3 * 160
    status, out, _ = cli(capsys, "train-cost", "resnet18", "--input", "1x3x64x64", "-f", "json")
    assert json.loads(out)["summary"]["size"] == 64
    assert json.loads(out)["summary"]["forward_macs_per_image"] == 148_557_824
