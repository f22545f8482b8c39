"""The bad-input corpus: every command fed what a new user (or a careless script) gives it.

Bad input: exit status 2, exactly one `cnncost: error:` line naming the problem, nothing on stdout, and no file
created or changed. Odd but valid input: the right result. User model files of every broken kind are written
into tmp_path by the fixture below.
"""
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cnncost.bench import csvio
from cnncost.cli import run

CONV_A = 3 * 8 * 3 * 3 + 8  # helper layers.py in M/a: Conv2d(3, 8, 3) weights + bias = 224
CONV_B = 3 * 64 * 5 * 5 + 64  # helper layers.py in M/b: Conv2d(3, 64, 5) = 4,864

NET = """
import torch.nn as nn
import layers

def make(use_extra=False):
    model = nn.Sequential(layers.block())
    if use_extra:
        model.append(nn.ReLU())
    return model
"""

FILES = {
    "a/layers.py": "import torch.nn as nn\ndef block():\n    return nn.Conv2d(3, 8, 3)\n",
    "b/layers.py": "import torch.nn as nn\ndef block():\n    return nn.Conv2d(3, 64, 5)\n",
    "a/net.py": NET,
    "b/net.py": NET,
    "dataclass_net.py": """
        from __future__ import annotations
        from dataclasses import dataclass
        import torch.nn as nn

        @dataclass
        class Config:
            width: int = 8

        def make():
            return nn.Conv2d(3, Config().width, 3)
        """,
    "noisy.py": """
        import torch.nn as nn
        print("imported")

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                print("built")
                self.conv = nn.Conv2d(3, 8, 3)

            def forward(self, x):
                print("forward")
                return self.conv(x)

        def make():
            return Net()
        """,
    "exits.py": "import sys\nsys.exit(0)\n",
    "exits3.py": "import sys\nsys.exit(3)\n",
    "argv.py": """
        import argparse
        import torch.nn as nn
        parser = argparse.ArgumentParser()
        parser.add_argument("--lr", type=float, required=True)
        parser.parse_args()

        def make():
            return nn.Conv2d(3, 8, 3)
        """,
    "argv_ok.py": """
        import sys
        import torch.nn as nn
        ARGS = list(sys.argv[1:])

        def make():
            assert not ARGS, ARGS
            return nn.Conv2d(3, 8, 3)
        """,
    "exit_forward.py": """
        import sys
        import torch.nn as nn

        class Net(nn.Module):
            def forward(self, x):
                sys.exit(3)

        def make():
            return Net()

        def quits():
            sys.exit("no GPU")
        """,
    "syntax.py": "def make(:\n",
    "raises.py": "raise RuntimeError('needs a dataset')\n",
    "missing_import.py": "import not_a_module_anywhere\n",
    "number.py": "def make():\n    return 42\n",
    "fails_forward.py": """
        import torch.nn as nn

        class Net(nn.Module):
            def forward(self, x):
                raise ValueError("shape mismatch")

        def make():
            return Net()
        """,
    "net.txt": "def make():\n    pass\n",
    "fd_writes.py": """
        import os
        import torch.nn as nn
        os.write(1, b"at import\\n")

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 8, 3)

            def forward(self, x):
                os.write(1, b"in forward\\n")
                return self.conv(x)

        def make():
            return Net()
        """,
    # BaseExceptions that are not Exceptions, raised by user code itself (no Ctrl-C was pressed)
    "interrupts.py": "raise KeyboardInterrupt\n",
    "base_exceptions.py": """
        import torch.nn as nn

        class Boom(BaseException):
            pass

        class Net(nn.Module):
            def forward(self, x):
                raise Boom("in forward")

        class Interrupted(nn.Module):
            def forward(self, x):
                raise KeyboardInterrupt

        def make():
            return Net()

        def interrupted():
            return Interrupted()

        def boom():
            raise Boom("in the factory")

        def generator_exit():
            raise GeneratorExit("closed")

        def interrupt():
            raise KeyboardInterrupt
        """,
}


def bench_header() -> str:
    return ",".join(csvio.SCHEMA) + "\n"


def bench_row(**values) -> str:
    row = {k: "" for k in csvio.SCHEMA}
    row.update(values)
    return ",".join(str(v) for v in row.values()) + "\n"


@pytest.fixture(scope="module")
def where(tmp_path_factory) -> Path:
    """M/: the user model files; CSVs of every broken kind; a guarded file."""
    root = tmp_path_factory.mktemp("corpus")
    for name, text in FILES.items():
        path = root / "M" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    (root / "M" / "binary.py").write_bytes(b"\xff\xfe\x00\x01 not python")
    (root / "binary.csv").write_bytes(b"\xff\xfe\x00b\x00i\x00n")
    (root / "latin1.csv").write_bytes(bench_header().encode() + "r\u00e9seau,train\n".encode("latin-1"))
    (root / "quote.csv").write_text(bench_header() + 'a,"never closed\n')
    (root / "other.csv").write_text("name,value\nx,1\n")
    (root / "empty.csv").write_text("")
    (root / "impossible.csv").write_text(bench_header() + "".join(bench_row(
        model="resnet18", mode="train", batch=8, size=224, dtype="fp32", img_per_s=rate, device="cuda",
        device_name="H100", compile="False", channels_last="False") for rate in ("0", "-5", "nan", "inf", "fast")))
    (root / "loop.json").symlink_to("loop.json")
    (root / "readonly.json").write_text("keep\n")
    (root / "readonly.json").chmod(0o444)
    (root / "readonly.csv").write_text(bench_header())
    (root / "readonly.csv").chmod(0o444)
    (root / "fp32.csv").write_text(bench_header() + bench_row(
        model="resnet18", mode="train", batch=8, size=224, dtype="fp32", img_per_s=100.0, device="cpu",
        device_name="AMD EPYC", compile="False", channels_last="False", threads=2))
    return root


@pytest.fixture
def guarded(where):
    """A file every failing command is pointed at (-o): mode 0600, content 'keep'."""
    path = where / "guarded.json"
    path.write_text("keep\n")
    path.chmod(0o600)
    return path


def files(root: Path) -> dict:
    """Every file under root (bytecode caches aside) with its size, modification time and mode."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_mode) for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def expand(argv, where: Path, guarded: Path) -> list[str]:
    return [a.format(M=where / "M", tmp=where, guard=guarded) for a in argv]


WITH_OUTPUT = {"show", "list", "compare", "scale", "trace", "verify", "bench", "train-cost", "bottleneck", "devices"}

BAD = [
    # unknown names, levels, units, formats, dtypes; suggestions come from every accepted name
    (["show", "mobilenet_v3"], "did you mean mobilenet_v2, mobilenet_v3_small"),
    (["show", "resnet5"], "did you mean resnet50"),
    (["show", "resnet50", "--by", "depth"], "unknown level 'depth'"),
    (["show", "resnet50", "--unit", "gflops"], "unknown unit 'gflops'"),
    (["show", "resnet50", "-f", "yaml"], "unknown format 'yaml'"),
    (["show", "resnet50", "--dtype", "fp8"], "unknown dtype 'fp8'"),
    (["show", "resnet50", "--size", "0"], "must be positive"),
    (["show", "resnet50", "--batch", "-1"], "must be positive"),
    (["show", "resnet50", "--batch", "x"], "Invalid value for '--batch'"),
    (["show", "resnet50", "--batch", "100000000000000"], "too large for a 64-bit integer"),
    (["show", "convnext_tiny", "--dtype", "fp8"], "unknown dtype 'fp8'"),
    (["show"], "Missing argument"),
    (["show", "resnet50", "--no-such-option"], "No such option"),
    (["list", "nothing*"], "no model matches 'nothing*'"),
    (["list", "--unit", "ops"], "unknown unit 'ops'"),
    (["compare", "resnet50"], "at least two models"),
    (["compare", "resnet50", "RESNET50"], "resnet50 is given twice"),
    (["compare", "resnet50", "resnett18"], "did you mean resnet18"),
    (["compare", "resnet50", "{M}/syntax.py:make"], "cannot import"),
    # -o: empty, a directory, a trailing slash, a missing folder
    (["show", "resnet50", "-o", ""], "--output needs a file name"),
    (["show", "resnet50", "-o", "{tmp}"], "it is a directory"),
    (["show", "resnet50", "-o", "{tmp}/new.csv/"], "cannot end with '/'"),
    (["show", "resnet50", "-o", "{tmp}/no/such/dir/x.csv"], "does not exist"),
    (["list", "-o", "{tmp}/new.json/"], "cannot end with '/'"),
    (["bottleneck", "-o", ""], "--output needs a file name"),
    (["devices", "-f", "yaml"], "unknown format 'yaml'"),
    (["bottleneck", "--in", "0"], "must be positive"),
    (["bottleneck", "--groups", "7"], "groups"),
    # scale: bounds checked up front
    (["scale", "--phi", "100"], "phi must be between -25 and 25"),
    (["scale", "--phi", "1e9"], "phi must be between"),
    (["scale", "--phi", "-1e9"], "phi must be between"),
    (["scale", "--phi", "1", "--phi", "1e9"], "phi must be between"),
    (["scale", "--phi", "nan"], "positive finite"),
    (["scale", "--depth", "1e308"], "depth multiplier must be between 0.01 and 100"),
    (["scale", "--width", "1e-9"], "width multiplier must be between 0.01 and 100"),
    (["scale", "--width", "-2"], "positive finite"),
    (["scale", "--resolution", "100"], "at most 8192"),
    (["scale", "--resolution", "1e-6"], "leaves no pixels"),
    (["scale", "vgg16"], "cannot be scaled"),
    # user model files of every broken kind
    (["trace", "{M}/exits.py:make"], "exits.py called sys.exit(0) while being imported"),
    (["trace", "{M}/exits3.py:make"], "exits3.py called sys.exit(3)"),
    (["trace", "{M}/argv.py:make"], "argv.py called sys.exit(2)"),
    (["trace", "{M}/exit_forward.py:make"], "exit_forward.py called sys.exit(3)"),
    (["trace", "{M}/exit_forward.py:quits"], "called sys.exit('no GPU')"),
    (["trace", "{M}/syntax.py:make"], "cannot import"),
    (["trace", "{M}/binary.py:make"], "cannot import"),
    (["trace", "{M}/raises.py:make"], "RuntimeError: needs a dataset"),
    (["trace", "{M}/missing_import.py:make"], "No module named 'not_a_module_anywhere'"),
    (["trace", "{M}/number.py:make"], "not a torch.nn.Module"),
    (["trace", "{M}/fails_forward.py:make"], "ValueError: shape mismatch"),
    (["trace", "{M}/net.txt:make"], "is not a Python file (.py)"),
    (["trace", "{M}:make"], "is a directory"),
    (["trace", "{M}/nowhere.py:make"], "no such file"),
    (["trace", "{M}/a/net.py:nothing"], "has no factory 'nothing'"),
    (["trace", "{M}/a/net.py:"], "expected FILE.py:FACTORY"),
    (["trace", "no_such_package.mod:make"], "cannot import no_such_package.mod"),
    (["trace", "{M}/a/net.py:make", "--arg", "use_extra"], "expected KEY=VALUE"),
    (["trace", "{M}/a/net.py:make", "--arg", "use_extra=[1,"], "is not a Python literal"),
    (["trace", "{M}/a/net.py:make", "--arg", "use_extra="], "is not a Python literal"),
    (["trace", "{M}/a/net.py:make", "--arg", "a=1", "--arg", "a=2"], "--arg a is given twice"),
    (["trace", "{M}/a/net.py:make", "--arg", "width=3x"], "is not a Python literal"),
    (["trace", "resnet18", "--arg", "width=3"], "only apply to FILE.py:FACTORY"),
    (["verify", "{M}/exits.py:make", "--tools", "none"], "called sys.exit(0)"),
    (["show", "{M}/exits.py:make"], "called sys.exit(0)"),
    # bench: refused before anything runs
    (["bench", "resnet18", "--device", "cpu", "--batch", "1,,1"], "--batch wants positive integers"),
    (["bench", "resnet18", "--device", "cpu", "--batch", "0"], "--batch wants positive integers"),
    (["bench", "resnet18", "--device", "cpu", "--batch", "1.5"], "--batch wants positive integers"),
    (["bench", "resnet18", "--device", "cpu", "--out", ""], "--out needs a CSV file name"),
    (["bench", "resnet18", "--device", "cpu", "--out", "{tmp}/no/dir/b.csv"], "does not exist"),
    (["bench", "resnet18", "--device", "cpu", "--out", "{tmp}/binary.csv"], "binary.csv is not a UTF-8 CSV"),
    (["bench", "resnet18", "--device", "cpu", "--out", "{tmp}/other.csv"], "different header"),
    (["bench", "resnet18", "--device", "cpu", "--out", "{tmp}/b.csv/"], "cannot end with '/'"),
    (["bench", "resnet18", "--device", "cpu", "--compile-mode", "max-autotune"], "applies only with --compile"),
    (["bench", "resnet18", "--device", "cpu", "--dtype", "fp8"], "unknown dtype 'fp8'"),
    (["bench", "resnet18", "--device", "cpu", "--mode", "eval"], "unknown mode 'eval'"),
    (["bench", "resnet18", "--device", "tpu"], "unknown device 'tpu'"),
    (["bench", "resnet18", "--device", "cpu", "-f", "xml"], "unknown format 'xml'"),
    (["bench", "{M}/net.txt:make", "--device", "cpu"], "is not a Python file"),
    # plot and train-cost: CSVs that are not ours, not UTF-8, or have no matching row
    (["plot", "{tmp}/binary.csv"], "binary.csv is not a UTF-8 CSV"),
    (["plot", "{tmp}/latin1.csv"], "latin1.csv is not a UTF-8 CSV"),
    (["plot", "{tmp}/quote.csv"], "quote.csv is not a readable bench CSV"),
    (["plot", "{tmp}/other.csv"], "is not a cnncost bench CSV"),
    (["plot", "{tmp}/empty.csv"], "is not a cnncost bench CSV"),
    (["plot", "{tmp}/nowhere.csv"], "no such CSV file"),
    (["plot", "{tmp}/fp32.csv", "--formats", ""], "--formats wants png, svg"),
    (["plot", "{tmp}/fp32.csv", "--formats", "png,"], "--formats wants png, svg"),
    (["plot", "{tmp}/fp32.csv", "--formats", "gif"], "unknown plot format 'gif'"),
    (["train-cost", "resnet18", "--csv", "{tmp}/binary.csv"], "binary.csv is not a UTF-8 CSV"),
    (["train-cost", "resnet18", "--csv", "{tmp}/fp32.csv"],
     "has no measured training row of resnet18 at 224 px in bf16; it has: resnet18 224 px fp32"),
    (["train-cost", "resnet18", "--mfu", "0"], "MFU must be in (0, 1]"),
    (["train-cost", "resnet18", "--mfu", "nan"], "MFU must be in (0, 1]"),
    (["train-cost", "resnet18", "--epochs", "0"], "must be positive"),
    (["train-cost", "resnet18", "--gpu", "h1000"], "unknown device 'h1000'"),
    # report: folders
    (["report", "--out", ""], "need a folder name"),
    (["report", "--out", "{guard}"], "not a directory"),
    (["report", "--results", "{tmp}/nowhere", "--quiet"], "no such folder"),
    # (second pass) BaseExceptions from user code: one line naming the file, not an interrupt or a traceback
    (["trace", "{M}/interrupts.py:make"], "interrupts.py raised KeyboardInterrupt while being imported"),
    (["trace", "{M}/base_exceptions.py:interrupt"], "base_exceptions.py raised KeyboardInterrupt"),
    (["trace", "{M}/base_exceptions.py:boom"], "base_exceptions.py raised Boom: in the factory"),
    (["trace", "{M}/base_exceptions.py:generator_exit"], "base_exceptions.py raised GeneratorExit: closed"),
    (["trace", "{M}/base_exceptions.py:make"], "base_exceptions.py raised Boom: in forward while it ran"),
    (["trace", "{M}/base_exceptions.py:interrupted"], "raised KeyboardInterrupt while it ran"),
    # read-only files are not replaced (not even by root, who may write anything)
    (["show", "resnet18", "-o", "{tmp}/readonly.json"], "readonly.json: the file is read-only (mode 0444)"),
    (["bench", "resnet18", "--device", "cpu", "--out", "{tmp}/readonly.csv"], "the file is read-only"),
    # bench and train-cost: every limit checked before any work
    (["bench", "resnet18", "--device", "cpu", "--threads", "100000"], "--threads must be at most"),
    (["bench", "resnet18", "--device", "cpu", "--iters", "99999999999"], "--iters must be at most 100,000"),
    (["bench", "resnet18", "--device", "cpu", "--repeats", "5000"], "--repeats must be at most 1,000"),
    (["bench", "resnet18", "--device", "cpu", "--batch", "99999999999999999999"], "--batch wants positive integers"),
    (["train-cost", "resnet18", "--gpu", ""], "unknown device ''"),
    (["train-cost", "resnet18", "--dtype", "fp8"], "unknown dtype 'fp8'"),
    (["train-cost", "resnet18", "--csv", "{tmp}/other.csv"], "is not a cnncost bench CSV"),
    # impossible measurements (0, negative, nan, words) are failed rows, never a rate to divide by
    (["train-cost", "resnet18", "--dtype", "fp32", "--csv", "{tmp}/impossible.csv"],
     "impossible.csv has no measured training row of resnet18 at 224 px in fp32; it has no error-free training rows"),
    (["plot", "{tmp}/impossible.csv"], "impossible.csv has no measured rows to plot"),
    (["plot", "{tmp}/fp32.csv", "--out-dir", ""], "--out-dir needs a folder name"),
    # no output replaces a file the command reads, a loop of links, or a name too long
    (["show", "{M}/dataclass_net.py:make", "-o", "{M}/dataclass_net.py"], "it is the model file this command reads"),
    (["train-cost", "resnet18", "--dtype", "fp32", "--csv", "{tmp}/fp32.csv", "-o", "{tmp}/fp32.csv"],
     "fp32.csv: it is the CSV this command reads"),
    (["bench", "resnet18", "--device", "cpu", "--out", "{tmp}/fp32.csv", "-o", "{tmp}/fp32.csv"],
     "it is the --out CSV this command appends to"),
    (["show", "resnet18", "-o", "{tmp}/loop.json"], "loop.json: Too many levels of symbolic links"),
    (["show", "resnet18", "-o", "{tmp}/" + "n" * 300 + ".json"], "File name too long"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(capsys, where, guarded, argv, message):
    argv = expand(argv, where, guarded)
    if argv[0] in WITH_OUTPUT and "-o" not in argv:
        argv += ["-o", str(guarded)]
    before = files(where)
    status = run(argv)
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("cnncost: error:")]
    assert status == 2 and len(errors) == 1 and message in errors[0], err
    assert out == "" and "Traceback" not in err and "internal error" not in err
    assert files(where) == before and guarded.read_text() == "keep\n"


# -- odd but valid input: the right result ------------------------------------------------------------------


def cli_json(capsys, *argv) -> dict:
    status = run([*argv, "-f", "json"])
    out, err = capsys.readouterr()
    assert status == 0, err
    return json.loads(out)


@pytest.mark.parametrize("value, relu", [("false", False), ("FALSE", False), ("False", False), ("none", False),
                                         ("0", False), ("true", True), ("True", True), ("TRUE", True), ("1", True)])
def test_arg_values_are_python_literals_true_false_none_any_case(capsys, where, value, relu):
    data = cli_json(capsys, "trace", f"{where}/M/a/net.py:make", "--arg", f"use_extra={value}")
    assert any(r["kind"] == "relu" for r in data["rows"]) == relu
    assert data["totals"]["params"] == CONV_A


def test_files_sharing_helper_names_are_loaded_in_isolation(capsys, where):
    data = cli_json(capsys, "verify", f"{where}/M/a/net.py:make", f"{where}/M/b/net.py:make", "--tools", "none")
    params = [m["totals"][0]["params"] for m in data["models"]]
    assert params == [CONV_A, CONV_B]
    # and again in the other order, in the same process
    data = cli_json(capsys, "verify", f"{where}/M/b/net.py:make", f"{where}/M/a/net.py:make", "--tools", "none")
    assert [m["totals"][0]["params"] for m in data["models"]] == [CONV_B, CONV_A]


def test_future_annotations_and_dataclass_load(capsys, where):
    # Conv2d(3, 8, 3): 3 * 8 * 3 * 3 + 8 = 224 parameters
    assert cli_json(capsys, "trace", f"{where}/M/dataclass_net.py:make")["totals"]["params"] == 224


def test_user_prints_go_to_stderr_and_json_stays_clean(capsys, where):
    status = run(["trace", f"{where}/M/noisy.py:make", "-f", "json"])
    out, err = capsys.readouterr()
    assert status == 0 and json.loads(out)["totals"]["params"] == 224
    assert "imported" in err and "built" in err and "forward" in err


def test_user_import_sees_a_neutral_argv(capsys, where):
    assert cli_json(capsys, "trace", f"{where}/M/argv_ok.py:make", "--batch", "2")["totals"]["params"] == 224


@pytest.mark.parametrize("name, first", [("r.json", "{"), ("r.csv", "name,stage,kind"), ("r.md", "### resnet18"),
                                         ("r.txt", "resnet18 on 1x3x224x224"), ("R.JSON", "{")])
def test_output_format_follows_the_extension(capsys, tmp_path, name, first):
    assert run(["show", "resnet18", "-o", str(tmp_path / name)]) == 0
    assert (tmp_path / name).read_text().startswith(first) and capsys.readouterr().out == ""


def test_format_given_wins_over_the_extension_and_dash_is_stdout(capsys, tmp_path):
    assert run(["show", "resnet18", "-f", "JSON", "-o", str(tmp_path / "r.csv")]) == 0
    assert json.loads((tmp_path / "r.csv").read_text())["model"] == "resnet18"
    assert run(["show", "resnet18", "-o", "-", "-f", "Csv"]) == 0
    assert capsys.readouterr().out.startswith("name,stage,kind")


def test_case_insensitive_formats_dtypes_units_levels(capsys):
    lower = cli_json(capsys, "show", "resnet18", "--dtype", "fp16")
    upper = cli_json(capsys, "show", "RESNET18", "--dtype", "FP16", "--unit", "MACS", "--by", "LAYER")
    assert upper["totals"] == lower["totals"] and upper["dtype"] == "fp16"
    fp32 = cli_json(capsys, "show", "resnet18")
    # fp16 moves 2 bytes per element, fp32 4: exactly half the bytes
    assert 2 * upper["totals"]["bytes_read"] == fp32["totals"]["bytes_read"]


def test_overwriting_keeps_mode_and_hard_links(capsys, tmp_path):
    target, link = tmp_path / "r.json", tmp_path / "link.json"
    target.write_text("old\n")
    target.chmod(0o600)
    os.link(target, link)
    assert run(["show", "resnet18", "-o", str(target)]) == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert json.loads(link.read_text())["model"] == "resnet18" and target.stat().st_ino == link.stat().st_ino


def test_narrow_terminal_leaves_columns_out_and_says_so(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert run(["show", "resnet18"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80 and "left out to fit 80 characters" in out
    assert run(["show", "resnet18", "-f", "csv"]) == 0  # machine formats are unaffected
    assert "bytes_written" in capsys.readouterr().out.splitlines()[0]


@pytest.mark.parametrize("columns, ok", [("abc", False), ("0", False), ("-5", False), ("100", True)])
def test_columns_setting(capsys, monkeypatch, columns, ok):
    monkeypatch.setenv("COLUMNS", columns)
    status = run(["list", "resnet18"])
    err = capsys.readouterr().err
    assert (status == 0) == ok and (ok or f"COLUMNS must be a positive whole number of characters, got "
                                           f"'{columns}'" in err)


def test_show_traces_a_model_with_no_spec(capsys):
    import torchvision
    meta = torchvision.models.get_model_weights("mobilenet_v2").DEFAULT.meta
    data = cli_json(capsys, "show", "mobilenet_v2")
    assert data["source"] == "cnncost trace" and data["totals"]["params"] == meta["num_params"]
    assert abs(data["totals"]["core_macs"] / 1e9 - meta["_ops"]) < 0.0005  # torchvision's _ops: GMACs, rounded


def test_compare_a_spec_with_a_traced_model(capsys):
    import torchvision
    convnext = torchvision.models.get_model_weights("convnext_tiny").DEFAULT.meta
    data = cli_json(capsys, "compare", "resnet50", "convnext_tiny")
    assert [t["model"] for t in data["totals"]] == ["resnet50", "convnext_tiny"]
    assert data["totals"][1]["params"] == convnext["num_params"]
    stages = {(s["model"], s["stage"]) for s in data["stages"]}
    # a traced model's stages are its repeated blocks: ConvNeXt's features.0 (stem) ... features.7
    assert {("resnet50", "conv1"), ("convnext_tiny", "features.1"), ("convnext_tiny", "classifier")} <= stages


def test_list_all_adds_torchvision_models(capsys):
    import torchvision
    rows = cli_json(capsys, "list", "mobilenet*", "--all")
    v2 = next(r for r in rows if r["model"] == "mobilenet_v2")
    assert v2["params"] == torchvision.models.get_model_weights("mobilenet_v2").DEFAULT.meta["num_params"]


def test_scale_at_its_bounds(capsys):
    row = cli_json(capsys, "scale", "--phi", "25")["rows"][0]
    assert row["depth_mult"] == round(1.2 ** 25, 4)  # alpha^phi = 95.3962, inside the bound of 100


def test_train_cost_labels_a_cpu_measurement_cpu_hours(capsys, where):
    data = cli_json(capsys, "train-cost", "resnet18", "--csv", f"{where}/fp32.csv", "--dtype", "FP32")
    measured = data["estimates"][0]
    # 90 epochs x 1,281,167 images at 100 img/s: 1,153,050.3 s = 320.292 hours
    assert measured["cpu_hours"] == pytest.approx(90 * 1_281_167 / 100 / 3600, abs=1e-3)
    assert measured["gpu_hours"] is None and "(CPU)" in measured["basis"]


def test_verify_of_several_models_draws_no_progress_off_a_terminal(capsys, where):
    status = run(["verify", f"{where}/M/a/net.py:make", f"{where}/M/b/net.py:make", "--tools", "none",
                  "-f", "json", "--quiet"])
    out, err = capsys.readouterr()
    assert status == 0 and json.loads(out)["models"] and "verify:" not in err


# -- real processes: exit statuses and the console's encoding ------------------------------------------------


def cnncost(*argv, **env):
    return subprocess.run([sys.executable, "-m", "cnncost", *argv], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120, check=False)


def test_sys_exit_in_user_code_is_exit_2_of_the_process(where):
    done = cnncost("trace", f"{where}/M/exits.py:make")
    assert done.returncode == 2 and done.stdout == ""
    line = f"cnncost: error: {where}/M/exits.py called sys.exit(0) while being imported"
    assert done.stderr.strip().splitlines() == [line]


def test_a_console_that_cannot_encode_the_output(tmp_path):
    model = tmp_path / "caf\u00e9.py"
    model.write_text("import torch.nn as nn\ndef make():\n    return nn.Conv2d(3, 8, 3)\n")
    done = cnncost("trace", f"{model}:make", PYTHONIOENCODING="ascii")
    errors = [line for line in done.stderr.splitlines() if line.startswith("cnncost: error:")]
    assert done.returncode == 2 and done.stdout == "" and len(errors) == 1 and "encoding (ascii)" in errors[0]
    # an ASCII console still gets the tables (ASCII borders) when the text itself is ASCII
    done = cnncost("bottleneck", PYTHONIOENCODING="ascii")
    assert done.returncode == 0 and "112.9M" in done.stdout


def test_trace_and_verify_options_in_any_case(capsys):
    lower = cli_json(capsys, "trace", "resnet18", "--by", "kind")
    upper = cli_json(capsys, "trace", "resnet18", "--by", "KIND")
    assert upper["rows"] == lower["rows"] and upper["by"] == "kind"
    data = cli_json(capsys, "verify", "resnet18", "--tools", "NONE", "--layers", "ALL")
    assert data["models"]


@pytest.mark.parametrize("argv, message", [("list resnet18 >&-", "stdout is closed"),
                                           ("list resnet18 >/dev/full", "cannot write to stdout: No space left"),
                                           ("show --help >/dev/full", "cannot write to stdout: No space left"),
                                           ("--version >/dev/full", "cannot write to stdout: No space left")])
def test_stdout_closed_or_full_is_one_line(argv, message):
    done = subprocess.run(f"{sys.executable} -m cnncost {argv}", shell=True, capture_output=True,
                          text=True, timeout=120, check=False)
    errors = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(errors) == 1 and errors[0].startswith(f"cnncost: error: {message}")


def test_a_reader_that_goes_away_is_not_an_error():
    # `| true` closes the pipe at once: the write fails with EPIPE, which ends quietly with 128 + SIGPIPE
    done = subprocess.run(f"{sys.executable} -m cnncost show densenet264 -f json | true; echo ${{PIPESTATUS[0]}}",
                          shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.stdout.strip() in ("0", "141") and done.stderr == ""


def test_user_writes_below_print_stay_off_stdout(where):
    # os.write(1, ...) bypasses print(): file descriptor 1 itself points at stderr while user code runs
    done = cnncost("trace", f"{where}/M/fd_writes.py:make", "-f", "json")
    assert done.returncode == 0 and json.loads(done.stdout)["totals"]["params"] == 224  # 3 * 8 * 3 * 3 + 8
    assert "at import" in done.stderr and "in forward" in done.stderr
