"""`cnncost list`, `show`, `compare`, `scale`: fields, units, formats, files, and every bad input."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
from torchvision.models import get_model_weights

from cnncost.cli import run


def cli(capsys, *argv):
    """Run the CLI in-process; return (exit status, stdout, stderr)."""
    status = run(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def cli_json(capsys, *argv):
    status, out, err = cli(capsys, *argv, "--format", "json")
    assert status == 0, err
    return json.loads(out)


def tv_meta(name: str) -> dict:
    return get_model_weights(name).DEFAULT.meta


# -- list -------------------------------------------------------------------------------------


def test_list_fields_aliases_and_torchvision_numbers(capsys):
    rows = cli_json(capsys, "list", "resnext*")
    assert [r["model"] for r in rows] == ["resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d"]
    assert list(rows[0]) == ["model", "aliases", "family", "size", "params", "core_macs", "torchvision"]
    first = rows[0]
    assert first["aliases"] == "resnext50" and first["size"] == 224
    assert first["params"] == tv_meta("resnext50_32x4d")["num_params"]
    assert round(first["core_macs"] / 1e9, 3) == tv_meta("resnext50_32x4d")["_ops"]


def test_list_wildcards_match_aliases_and_everything(capsys):
    assert [r["model"] for r in cli_json(capsys, "list", "effnet_b?")] == [f"efficientnet_b{k}" for k in range(8)]
    everything = cli_json(capsys, "list")
    assert len(everything) >= 35 and everything[0]["model"] == "alexnet"
    assert {"densenet264", "googlenet_paper", "resnet50_v1", "alexnet_paper_2gpu"} <= {r["model"] for r in everything}


def test_list_in_flops_and_csv(capsys):
    macs = cli_json(capsys, "list", "vgg16")[0]["core_macs"]
    flops = cli_json(capsys, "list", "vgg16", "--unit", "flops")[0]
    assert flops["core_flops"] == 2 * macs and "core_macs" not in flops
    status, out, _ = cli(capsys, "list", "vgg*", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert status == 0 and rows[0]["model"] == "vgg11" and int(rows[0]["params"]) == tv_meta("vgg11")["num_params"]


def test_list_table_names_the_unit(capsys):
    status, out, _ = cli(capsys, "list", "resnet50")
    assert status == 0 and "core_macs" in out and "25.6M" in out and "4.09G" in out and "MACs" in out


# -- show -------------------------------------------------------------------------------------

SUMMED = ("params", "buffers", "macs", "bias_adds", "activations", "bytes_read", "bytes_written")


@pytest.mark.parametrize("by", ["layer", "stage", "kind", "category"])
def test_show_totals_are_the_sum_of_the_rows(capsys, by):
    data = cli_json(capsys, "show", "resnet50", "--by", by)
    assert data["model"] == "resnet50" and data["input_shape"] == [1, 3, 224, 224] and data["by"] == by
    for column in SUMMED:
        assert sum(r[column] for r in data["rows"]) == data["totals"][column], column
    assert data["totals"]["params"] == tv_meta("resnet50")["num_params"]
    assert round(data["totals"]["core_macs"] / 1e9, 3) == tv_meta("resnet50")["_ops"]


def test_show_layer_fields_and_names(capsys):
    data = cli_json(capsys, "show", "densenet121")
    row = {r["name"]: r for r in data["rows"]}["features.denseblock3.denselayer12.conv1"]
    assert set(row) >= {"name", "stage", "kind", "category", "in_shape", "out_shape", "kernel", "stride", "groups",
                        "params", "macs", "activations", "bytes_read", "bytes_written", "intensity_flop_per_byte"}
    # input: 256 + 11 x 32 = 608 channels at 14x14 -> 128 channels, 1x1: 14*14*128*608 MACs, 608*128 weights
    assert (row["in_shape"], row["out_shape"]) == ("1x608x14x14", "1x128x14x14")
    assert row["macs"] == 14 * 14 * 128 * 608 and row["params"] == 608 * 128 and row["stage"] == "denseblock3"
    assert row["bytes_read"] == (608 * 14 * 14 + 608 * 128) * 4 and row["bytes_written"] == 128 * 14 * 14 * 4
    assert data["totals"]["depth"] == 121


def test_show_stages_of_resnet_are_the_papers(capsys):
    data = cli_json(capsys, "show", "resnext50", "--by", "stage")
    assert [r["stage"] for r in data["rows"]] == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc"]


def test_show_size_batch_dtype_and_flops(capsys):
    base = cli_json(capsys, "show", "resnet18", "--by", "category")["totals"]
    data = cli_json(capsys, "show", "resnet18", "--batch", "2", "--dtype", "fp16", "--unit", "flops", "--by", "stage")
    assert data["input_shape"] == [2, 3, 224, 224] and data["unit"] == "flops" and data["dtype"] == "fp16"
    assert data["totals"]["flops"] == 2 * 2 * base["macs"] and "macs" not in data["totals"]
    assert data["totals"]["core_flops"] == 4 * base["core_macs"] and data["totals"]["params"] == base["params"]
    assert data["totals"]["bytes_written"] == base["bytes_written"]  # 2x the elements, half the bytes each
    small = cli_json(capsys, "show", "resnet18", "--size", "112")
    assert small["input_shape"] == [1, 3, 112, 112]


def test_show_table_csv_md_and_output_file(capsys, tmp_path):
    status, out, _ = cli(capsys, "show", "vgg16")
    assert status == 0 and "features.28" in out and "15.5G" in out and "macs" in out and "Totals" in out
    status, out, _ = cli(capsys, "show", "vgg16", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert status == 0 and rows[0]["name"] == "features.0" and rows[0]["macs"] == str(224 * 224 * 64 * 3 * 3 * 3)
    status, out, _ = cli(capsys, "show", "alexnet", "--format", "md", "--by", "stage")
    assert status == 0 and out.startswith("### alexnet") and "| fc6" in out
    target = tmp_path / "resnet50.json"
    status, out, _ = cli(capsys, "show", "resnet50", "--format", "json", "--output", str(target))
    assert status == 0 and out == "" and json.loads(target.read_text())["totals"]["params"] == 25_557_032


def test_list_and_show_do_not_import_torch():
    code = ("import sys; from cnncost.cli import run; assert run(['show', 'resnet50', '--format', 'json']) == 0; "
            "assert run(['list', '--format', 'csv']) == 0; assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# -- compare ----------------------------------------------------------------------------------


def test_compare_lecture_table(capsys):
    data = cli_json(capsys, "compare", "resnet50", "resnext50")
    resnet, resnext = data["totals"]
    assert (resnet["model"], resnext["model"]) == ("resnet50", "resnext50_32x4d")
    assert (resnet["published_params"], resnet["published_macs"]) == (25_500_000, 4_100_000_000)
    assert (resnext["published_params"], resnext["published_macs"]) == (25_000_000, 4_200_000_000)
    assert resnext["params"] == tv_meta("resnext50_32x4d")["num_params"]
    assert resnext["core_flops"] == 2 * resnext["core_macs"] and resnet["depth"] == resnext["depth"] == 50
    assert resnext["params_ratio"] == round(resnext["params"] / resnet["params"], 3)
    assert resnext["core_macs_ratio"] == round(resnext["core_macs"] / resnet["core_macs"], 3)
    assert resnext["torchvision_top1_pct"] == tv_meta("resnext50_32x4d")["_metrics"]["ImageNet-1K"]["acc@1"]
    stages = [(r["stage"], r["model"]) for r in data["stages"]]
    assert stages[:4] == [("conv1", "resnet50"), ("conv1", "resnext50_32x4d"), ("conv2", "resnet50"),
                          ("conv2", "resnext50_32x4d")]
    assert [s for s, m in stages if m == "resnet50"] == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc"]
    assert sum(r["core_macs"] for r in data["stages"] if r["model"] == "resnet50") == resnet["core_macs"]


def test_compare_table_and_stages_csv(capsys):
    status, out, _ = cli(capsys, "compare", "resnet50", "resnext50")
    assert status == 0 and "resnext50_32x4d / resnet50" in out and "0.979" in out and "4.23G" in out
    assert "[1x1 128, 3x3 128 g32, 1x1 256] x3" in out
    status, out, _ = cli(capsys, "compare", "googlenet", "googlenet_paper", "--stages", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert status == 0 and list(rows[0]) == ["stage", "model", "output", "structure", "params", "core_macs",
                                             "all_macs", "core_macs_ratio"]
    inception = {r["model"]: r["structure"] for r in rows if r["stage"] == "inception3a"}
    assert "1x1 16, 3x3 32" in inception["googlenet"] and "1x1 16, 5x5 32" in inception["googlenet_paper"]


def test_compare_in_flops(capsys):
    data = cli_json(capsys, "compare", "vgg16", "vgg19", "--unit", "flops")
    assert data["unit"] == "flops" and data["totals"][1]["core_flops_ratio"] > 1
    assert all("core_flops" in r and "core_macs" not in r for r in data["stages"])


# -- scale ------------------------------------------------------------------------------------


def test_scale_default_series(capsys):
    data = cli_json(capsys, "scale")
    rows = data["rows"]
    assert data["base"] == "efficientnet_b0" and [r["model"] for r in rows] == [f"phi={k}" for k in range(8)]
    assert rows[0]["core_macs"] == rows[0]["predicted_core_macs"] and rows[0]["core_macs_vs_predicted"] == 1.0
    # phi = 1: d = 1.2, w = 1.1, r = 1.15 -> d w^2 r^2 = 1.2 * 1.21 * 1.3225 = 1.92027
    assert (rows[1]["depth_mult"], rows[1]["width_mult"], rows[1]["resolution_mult"]) == (1.2, 1.1, 1.15)
    assert rows[1]["d_w2_r2"] == round(1.2 * 1.1**2 * 1.15**2, 4) and rows[1]["size"] == round(224 * 1.15)
    assert rows[1]["predicted_core_macs"] == round(rows[0]["core_macs"] * 1.2 * 1.1**2 * 1.15**2)


def test_scale_published_rows_are_torchvision_models(capsys):
    rows = cli_json(capsys, "scale", "--published")["rows"]
    assert [r["model"] for r in rows] == [f"efficientnet_b{k}" for k in range(8)]
    for row in rows:
        assert row["params"] == tv_meta(row["model"])["num_params"]
        assert round(row["core_macs"] / 1e9, 3) == tv_meta(row["model"])["_ops"]


def test_scale_explicit_multipliers_and_flops(capsys):
    row = cli_json(capsys, "scale", "--resolution", "2", "--unit", "flops")["rows"][0]
    assert row["size"] == 448 and row["d_w2_r2"] == 4 and "predicted_core_flops" in row
    assert row["params"] == row["predicted_params"]  # resolution leaves the weights alone
    row = cli_json(capsys, "scale", "resnet50", "--depth", "2")["rows"][0]
    assert row["model"] == "custom" and row["core_macs"] > row["predicted_core_macs"] / 2


# -- every bad input --------------------------------------------------------------------------

BAD = [
    (["show", "resnet5"], "unknown model 'resnet5'; did you mean resnet50"),
    (["show", "alexnet", "--size", "32"], "alexnet: layer features.12 (maxpool2d on 1x256x1x1)"),
    (["show", "resnet50", "--size", "0"], "must be positive"),
    (["show", "resnet50", "--batch", "0"], "must be positive"),
    (["show", "resnet50", "--size", "-5"], "must be positive"),
    (["show", "resnet50", "--by", "depth"], "unknown level 'depth'"),
    (["show", "resnet50", "--unit", "gflops"], "unknown unit 'gflops'"),
    (["show", "resnet50", "--format", "xml"], "unknown format 'xml'"),
    (["show", "resnet50", "--dtype", "fp8"], "unknown dtype 'fp8'"),
    (["show"], "Missing argument"),
    (["list", "nothing*"], "no model matches 'nothing*'"),
    (["list", "--unit", "ops"], "unknown unit 'ops'"),
    (["compare", "resnet50"], "at least two models"),
    (["compare", "resnext50", "resnext50_32x4d"], "resnext50_32x4d is given twice"),
    (["compare", "resnet50", "resnett18"], "unknown model 'resnett18'; did you mean resnet18"),
    (["compare", "resnet50", "vgg16", "--size", "16"], "vgg16: layer features.30"),
    (["scale", "vgg16"], "vgg16 cannot be scaled"),
    (["scale", "--width", "0"], "multipliers must be positive"),
    (["scale", "--phi", "1", "--depth", "2"], "not several"),
    (["scale", "--published", "--width", "2"], "not several"),
    (["scale", "--resolution", "0.001"], "leaves no pixels"),
]


@pytest.mark.parametrize("argv, message", BAD)
def test_bad_input_is_one_line_exit_2_and_no_file(capsys, tmp_path, argv, message):
    target = tmp_path / "out.json"
    status, out, err = cli(capsys, *argv, *(["--output", str(target)] if len(argv) > 1 else []))
    assert status == 2 and out == "" and not target.exists()
    assert err.startswith("cnncost: error: ") and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_unwritable_output(capsys, tmp_path):
    status, _, err = cli(capsys, "show", "resnet18", "--output", str(tmp_path / "missing" / "x.csv"))
    assert status == 2 and "does not exist" in err


def test_show_names_the_paper(capsys):
    data = cli_json(capsys, "show", "resnet50_v1", "--by", "stage")
    assert data["paper"]["macs"] == 3.8e9 and data["paper"]["source"].startswith("He et al. 2016")
    assert data["torchvision"] is None and "first 1x1" in data["paper"]["note"]
    status, out, _ = cli(capsys, "show", "resnet50", "--by", "stage")
    assert status == 0 and "About" in out and "Xie et al. 2017" in out


# -- the Python API returns the same tables as DataFrames -----------------------------------------


def test_api_dataframes(capsys):
    import cnncost
    models = cnncost.list_models("resnext*")
    assert list(models.model) == [r["model"] for r in cli_json(capsys, "list", "resnext*")]
    totals, stages = cnncost.compare("resnet50", "resnext50")
    assert list(totals.params) == [25_557_032, 25_028_904] and set(stages.model) == {"resnet50", "resnext50_32x4d"}
    series = cnncost.scale()
    assert list(series.model) == [f"phi={k}" for k in range(8)]
    assert list(cnncost.scale(phi=1).core_macs) == [cli_json(capsys, "scale", "--phi", "1")["rows"][0]["core_macs"]]
    assert cnncost.scale(width=2)["size"][0] == 224 and len(cnncost.scale(published=True)) == 8
