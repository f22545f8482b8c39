"""Bad input found by trying the CLI as a new user: one line on stderr, exit 2, nothing written."""
import json

import pytest

from cnncost.cli import run


@pytest.mark.parametrize("argv, message", [
    (["scale", "--phi", "nan"], "multipliers must be positive finite numbers"),
    (["scale", "--depth", "inf"], "multipliers must be positive finite numbers"),
    (["train-cost", "resnet50", "--size", "0"], "input size must be positive"),
    # vgg16's five 2x2 max pools need 32 px (found on meta): refused before anything is measured or written
    (["bench", "vgg16", "--device", "cpu", "--batch", "1", "--size", "16", "--iters", "1", "--warmup", "0",
      "--repeats", "1"], "vgg16 needs an input of at least 32 px"),
])
def test_bad_input_is_one_line_exit_2(capsys, tmp_path, argv, message):
    out_csv = tmp_path / "b.csv"
    status = run([*argv, *(["--out", str(out_csv)] if argv[0] == "bench" else [])])
    out, err = capsys.readouterr()
    assert status == 2 and message in err and err.strip().count("\n") == 0, err
    assert not out_csv.exists()


def test_flops_unit_renames_the_papers_figures(capsys):
    assert run(["show", "resnet50", "--unit", "flops", "--format", "json"]) == 0
    paper = json.loads(capsys.readouterr().out)["paper"]
    # the ResNeXt paper's 4.1G "FLOPs" are MACs: 4.1e9 MACs = 8.2e9 FLOPs, as an exact integer
    assert paper["flops"] == 2 * 4_100_000_000 and "macs" not in paper
    assert run(["compare", "resnet50", "resnext50", "--unit", "flops", "--format", "json"]) == 0
    totals = json.loads(capsys.readouterr().out)["totals"][0]
    assert totals["published_flops"] == 8_200_000_000 and "published_macs" not in totals
