"""`cnncost trace` and `cnncost verify` as a user runs them: every format, user models, exit statuses, bad input."""
import csv
import io
import json
import subprocess
import sys

import pytest

from cnncost import specs
from cnncost.cli import run
from cnncost.specs import ModelEntry

# torchvision's published metadata for resnet18 (an independent source): 11,689,512 parameters, 1.814 GMACs.
RESNET18_PARAMS, RESNET18_GMACS = 11_689_512, 1.814

USER_MODELS = '''
import torch
from torch import nn

def tiny(width=8):
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, 10))

def boom():
    raise ValueError("no config found")

def number():
    return 42

class NeedsData(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.c(x) if x.abs().max() >= 0 else x

class Broken(nn.Module):
    def forward(self, x):
        return x.view(-1, 7, 13)
'''


def cli(capsys, *argv):
    """Run the CLI in-process; return (exit status, stdout, stderr)."""
    status = run([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def models_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("user") / "nets.py"
    path.write_text(USER_MODELS)
    (path.parent / "syntax.py").write_text("def broken(:\n")
    return path


def test_trace_json_has_exact_counts(capsys):
    status, out, err = cli(capsys, "trace", "resnet18", "-f", "json")
    data = json.loads(out)
    assert status == 0 and data["source"] == "cnncost trace" and data["input_shape"] == [1, 3, 224, 224]
    assert data["totals"]["params"] == RESNET18_PARAMS
    assert round(data["totals"]["core_macs"] / 1e9, 3) == RESNET18_GMACS
    assert sum(r["macs"] for r in data["rows"]) == data["totals"]["macs"]
    conv1 = data["rows"][0]
    assert (conv1["name"], conv1["macs"]) == ("conv1", (112 * 112 * 64) * (7 * 7 * 3))  # 118,013,952


def test_trace_in_flops_renames_and_doubles(capsys):
    _, out, _ = cli(capsys, "trace", "resnet18", "-f", "json", "--unit", "flops")
    row = json.loads(out)["rows"][0]
    assert "macs" not in row and row["flops"] == 2 * (112 * 112 * 64) * (7 * 7 * 3)


def test_trace_csv_md_table_and_output_file(capsys, tmp_path):
    _, out, _ = cli(capsys, "trace", "alexnet", "-f", "csv", "--by", "category")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["category"] for r in rows} >= {"conv", "linear", "activation", "pool"}
    _, out, _ = cli(capsys, "trace", "alexnet", "-f", "md")
    assert out.startswith("### alexnet on 1x3x224x224, traced on meta, by layer (MACs)")
    _, out, _ = cli(capsys, "trace", "alexnet", "--by", "module")
    assert "features" in out and "classifier" in out and "MACs" in out
    target = tmp_path / "alexnet.json"
    status, out, _ = cli(capsys, "trace", "alexnet", "-f", "json", "-o", target)
    assert status == 0 and out == "" and json.loads(target.read_text())["totals"]["params"] == 61_100_840


def test_trace_user_model_with_arguments(capsys, models_file):
    _, out, _ = cli(capsys, "trace", f"{models_file}:tiny", "--arg", "width=16", "--size", "8", "-f", "json",
                    "--by", "kind")
    kinds = {r["kind"]: r for r in json.loads(out)["rows"]}
    assert kinds["conv2d"]["macs"] == (8 * 8 * 16) * (3 * 3 * 3)  # 1,024 x 27 = 27,648
    assert kinds["linear"]["macs"] == 16 * 10 and kinds["linear"]["params"] == 16 * 10 + 10


def test_trace_falls_back_to_cpu_with_a_notice(capsys, models_file):
    status, out, err = cli(capsys, "trace", f"{models_file}:NeedsData", "--size", "8", "-f", "json")
    assert status == 0 and "counted on the CPU instead" in err
    assert json.loads(out)["totals"]["core_macs"] == (8 * 8 * 4) * 3  # 768


def test_verify_json_explains_every_tool(capsys):
    status, out, err = cli(capsys, "verify", "resnet18", "--tools", "torch,ptflops-aten", "-f", "json")
    data = json.loads(out)
    model = data["models"][0]
    assert status == 0 and data["ok"] and model["ok"] and not model["mismatches"]
    sources = {t["source"]: t for t in model["totals"]}
    assert sources["torch"]["reported"] == f"{2 * sources['cnncost trace']['core_macs']:,} FLOPs"
    assert sources["torchvision metadata"]["params"] == RESNET18_PARAMS
    causes = {(c["source"], c["cause"]) for c in model["causes"]}
    assert ("torch", "MAC vs FLOP") in causes and ("ptflops (aten)", "bias adds") in causes
    assert not [c for c in model["causes"] if c["cause"] == "unexplained"]
    conv1 = next(r for r in model["layers"] if r["name"] == "conv1")
    assert conv1["analytic_macs"] == conv1["trace_macs"] == conv1["torch_macs"] == (112 * 112 * 64) * (7 * 7 * 3)


def test_verify_csv_is_the_layer_join(capsys):
    status, out, _ = cli(capsys, "verify", "resnet18", "resnet34", "--tools", "torch", "-f", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert status == 0 and {r["model"] for r in rows} == {"resnet18", "resnet34"}
    assert {"name", "category", "analytic_macs", "trace_macs", "torch_macs", "cause"} <= set(rows[0])


def test_verify_table_and_md(capsys):
    status, out, _ = cli(capsys, "verify", "resnet18", "--tools", "torch")
    assert status == 0 and "every difference from cnncost's trace" in out and "MAC vs FLOP" in out
    assert "all " in out and "layers agree" in out
    status, out, _ = cli(capsys, "verify", "vgg1?", "--tools", "none", "-f", "md", "--layers", "none")
    assert status == 0 and out.startswith("### Summary") and out.count("### vgg1") == 8  # 4 models x 2 tables


def test_verify_user_model(capsys, models_file):
    status, out, _ = cli(capsys, "verify", f"{models_file}:tiny", "--size", "8", "--tools", "torch", "-f", "json")
    model = json.loads(out)["models"][0]
    assert status == 0 and [t["source"] for t in model["totals"]] == ["cnncost trace", "torch"]


def test_verify_exits_1_on_a_wrong_spec(capsys, monkeypatch):
    wrong = ModelEntry("resnet18_wrong", specs.MODELS["resnet34"].build, 224, {"depth": 34}, "resnet18")
    monkeypatch.setitem(specs.MODELS, "resnet18_wrong", wrong)
    status, out, err = cli(capsys, "verify", "resnet18_wrong", "--tools", "none", "-f", "json")
    assert status == 1 and "disagree with the real model" in err
    assert json.loads(out)["models"][0]["mismatches"]


def test_paper_variant_is_explained_and_passes(capsys):
    status, out, _ = cli(capsys, "verify", "resnet50_v1", "--tools", "none", "-f", "json")
    model = json.loads(out)["models"][0]
    assert status == 0 and model["paper_variant"] and model["ok"]
    assert {c["cause"] for c in model["causes"]} == {"paper vs implementation"}


@pytest.mark.parametrize("argv, message", [
    (["trace", "nosuchnet"], "unknown model 'nosuchnet'"),
    (["trace", "resnet5O"], "did you mean resnet50"),
    (["trace", "{dir}/missing.py:tiny"], "no such file"),
    (["trace", "{file}:nothing"], "has no factory 'nothing'; it defines"),
    (["trace", "{file}:boom"], "raised ValueError: no config found"),
    (["trace", "{file}:number"], "returned int, not a torch.nn.Module"),
    (["trace", "{dir}/syntax.py:broken"], "cannot import"),
    (["trace", "{file}:Broken"], "forward failed"),
    (["trace", "no_such_package.nets:tiny"], "cannot import no_such_package.nets"),
    (["trace", "{file}:tiny", "--arg", "width"], "expected KEY=VALUE"),
    (["trace", "resnet50", "--arg", "width=2"], "only apply to FILE.py:FACTORY"),
    (["trace", "resnet50", "--size", "0"], "must be positive"),
    (["trace", "alexnet", "--size", "16"], "forward failed on cpu"),
    (["trace", "resnet50", "--device", "tpu"], "--device must be meta or cpu"),
    (["trace", "resnet50", "-f", "xml"], "unknown format"),
    (["verify"], "give one or more models, or --all"),
    (["verify", "resnet50", "--all"], "give one or more models, or --all"),
    (["verify", "resnet50", "--tools", "thop"], "unknown tool 'thop'"),
    (["verify", "resnet50", "--layers", "some"], "--layers must be diff, all or none"),
    (["verify", "zzz*"], "no registered model matches"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, models_file, tmp_path, argv, message):
    target = tmp_path / "out.json"
    argv = [a.format(file=models_file, dir=models_file.parent) for a in argv] + ["-o", str(target)]
    status, out, err = cli(capsys, *argv)
    assert status == 2 and out == "" and not target.exists()
    assert err.startswith("cnncost: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_cli_starts_without_torch():
    code = "import sys, cnncost.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
