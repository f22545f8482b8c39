"""`cnncost bottleneck`: the lecture's numbers in every format, every option, every bad input."""
import csv
import io
import json
import subprocess
import sys

import pytest

from cnncost.cli import run

# The lecture, with the arithmetic written out:
DIRECT = (14 * 14 * 48) * (5 * 5 * 480)  # 112,896,000 MACs
REDUCE = (14 * 14 * 16) * (1 * 1 * 480)  # 1,505,280 MACs
SPREAD = (14 * 14 * 48) * (5 * 5 * 16)  # 3,763,200 MACs
DIRECT_WEIGHTS = 5 * 5 * 480 * 48  # 576,000
REDUCED_WEIGHTS = 1 * 1 * 480 * 16 + 5 * 5 * 16 * 48  # 7,680 + 19,200 = 26,880


def cli(capsys, *argv):
    """Run the CLI in-process; return (exit status, stdout, stderr)."""
    status = run(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def cli_json(capsys, *argv):
    status, out, err = cli(capsys, "bottleneck", "--format", "json", *argv)
    assert status == 0, err
    return json.loads(out)


def test_lecture_numbers_in_json(capsys):
    data = cli_json(capsys)
    assert (DIRECT, REDUCE, SPREAD) == (112_896_000, 1_505_280, 3_763_200)
    assert data["direct"]["macs"] == DIRECT and data["direct"]["params"] == DIRECT_WEIGHTS == 576_000
    assert [s["macs"] for s in data["reduced"]["steps"]] == [REDUCE, SPREAD]
    assert data["reduced"]["macs"] == REDUCE + SPREAD == 5_268_480
    assert data["reduced"]["params"] == REDUCED_WEIGHTS
    assert data["macs_ratio"] == pytest.approx(DIRECT / (REDUCE + SPREAD), abs=1e-3)  # 21.43
    assert data["params_ratio"] == pytest.approx(DIRECT_WEIGHTS / REDUCED_WEIGHTS, abs=1e-3)
    assert data["direct"]["arithmetic"] == "(14 x 14 x 48) x (5 x 5 x 480) = 112,896,000"
    assert all(isinstance(data["direct"][k], int) for k in ("macs", "params", "bias_adds"))


def test_table_shows_the_arithmetic_and_units(capsys):
    status, out, _ = cli(capsys, "bottleneck", "--in", "480", "--out", "48")
    assert status == 0
    for text in ("(14 x 14 x 48) x (5 x 5 x 480) = 112,896,000", "(14 x 14 x 16) x (1 x 1 x 480) = 1,505,280",
                 "(14 x 14 x 48) x (5 x 5 x 16) = 3,763,200", "1,505,280 + 3,763,200 = 5,268,480",
                 "112.9M", "21.4x", "macs"):
        assert text in out


def test_flops_unit_doubles_and_renames(capsys):
    data = cli_json(capsys, "--unit", "flops")
    assert data["direct"]["flops"] == 2 * DIRECT and "macs" not in data["direct"]
    assert data["reduced"]["flops"] == 2 * (REDUCE + SPREAD)
    assert data["direct"]["arithmetic"].startswith("2 x (14 x 14 x 48)")
    assert data["flops_ratio"] == pytest.approx(DIRECT / (REDUCE + SPREAD), abs=1e-3)


def test_csv_has_exact_integers(capsys):
    status, out, _ = cli(capsys, "bottleneck", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert status == 0
    assert [int(r["macs"]) for r in rows] == [DIRECT, REDUCE, SPREAD, REDUCE + SPREAD]
    assert [int(r["params"]) for r in rows][-1] == REDUCED_WEIGHTS


def test_markdown(capsys):
    status, out, _ = cli(capsys, "bottleneck", "--format", "md")
    assert status == 0 and "| path" in out and "112.9M" in out


def test_options_change_the_arithmetic(capsys):
    # 3x3, stride 2, groups 4, batch 2, bias, 28x28 input 64 -> 32 via 8 channels.
    data = cli_json(capsys, "--in", "64", "--out", "32", "--size", "28", "--kernel", "3", "--reduce", "8",
                    "--stride", "2", "--groups", "4", "--batch", "2", "--bias")
    h = (28 + 2 * 1 - 3) // 2 + 1  # 14
    assert data["direct"]["out_shape"] == [2, 32, h, h]
    assert data["direct"]["macs"] == 2 * h * h * 32 * (3 * 3 * 64 // 4)
    assert data["direct"]["params"] == 32 * (64 // 4) * 3 * 3 + 32
    assert data["direct"]["bias_adds"] == 2 * 32 * h * h
    assert data["reduced"]["steps"][0]["macs"] == 2 * 28 * 28 * 8 * 64
    assert data["reduced"]["steps"][1]["macs"] == 2 * h * h * 32 * (3 * 3 * 8 // 4)
    assert data["direct"]["arithmetic"].startswith("2 x (14 x 14 x 32) x (3 x 3 x 16)")


def test_output_file_is_written_whole(capsys, tmp_path):
    target = tmp_path / "b.json"
    status, out, _ = cli(capsys, "bottleneck", "--format", "json", "--output", str(target))
    assert status == 0 and out == ""
    assert json.loads(target.read_text())["reduced"]["macs"] == REDUCE + SPREAD
    assert [p.name for p in tmp_path.iterdir()] == ["b.json"]  # no temporary file left behind


@pytest.mark.parametrize("argv, message", [
    (["--size", "0"], "every size must be positive"),
    (["--in", "-1"], "every size must be positive"),
    (["--out", "0"], "out channels and groups must be positive"),
    (["--reduce", "0"], "out channels and groups must be positive"),
    (["--batch", "0"], "every size must be positive"),
    (["--groups", "7"], "groups=7 must divide"),
    (["--size", "2", "--kernel", "9", "--padding", "0"], "larger than the padded input"),
    (["--padding", "-1"], "padding must not be negative"),
    (["--unit", "gflops"], "unknown unit 'gflops'"),
    (["--format", "xml"], "unknown format 'xml'"),
    (["--in", "many"], "Invalid value for '--in'"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, message):
    status, out, err = cli(capsys, "bottleneck", *argv)
    assert status == 2 and out == ""
    assert err.startswith("cnncost: error: ") and message in err and err.count("\n") == 1


def test_unwritable_output_leaves_nothing(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    status, _, err = cli(capsys, "bottleneck", "--output", str(blocker / "out.json"))
    assert status == 2 and "cannot write" in err
    status, _, err = cli(capsys, "bottleneck", "--output", str(tmp_path))
    assert status == 2 and "is a directory" in err
    assert [p.name for p in tmp_path.iterdir()] == ["file"] and blocker.read_text() == "keep me"


def test_bad_input_keeps_an_existing_output(capsys, tmp_path):
    target = tmp_path / "b.csv"
    target.write_text("previous")
    status, _, _ = cli(capsys, "bottleneck", "--groups", "7", "--output", str(target))
    assert status == 2 and target.read_text() == "previous"


def test_console_script_runs_without_importing_torch():
    code = ("import sys; from cnncost.cli import run; status = run(['bottleneck', '-f', 'json']); "
            "assert status == 0; assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["direct"]["macs"] == DIRECT


def test_entry_point_exit_status_and_stderr():
    done = subprocess.run([sys.executable, "-m", "cnncost", "bottleneck", "--groups", "7"], capture_output=True,
                          text=True)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == "cnncost: error: groups=7 must divide both input channels 480 and output channels 48"


def test_output_follows_a_symlink_to_its_target(capsys, tmp_path):
    target, link = tmp_path / "target.json", tmp_path / "link.json"
    target.write_text("{}")
    link.symlink_to(target)
    status, _, _ = cli(capsys, "bottleneck", "--format", "json", "--output", str(link))
    assert status == 0 and link.is_symlink()
    assert json.loads(target.read_text())["direct"]["macs"] == DIRECT


def test_output_dash_is_stdout(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, _ = cli(capsys, "bottleneck", "--format", "csv", "--output", "-")
    assert status == 0 and out.startswith("path,layer") and not (tmp_path / "-").exists()


def test_a_full_device_is_an_error_and_stays_a_device(capsys):
    import os
    import stat
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    status, _, err = cli(capsys, "bottleneck", "--output", "/dev/full")
    assert status == 2 and "No space left on device" in err
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_version(capsys):
    from cnncost import __version__
    status, out, _ = cli(capsys, "--version")
    assert status == 0 and out.strip() == f"cnncost {__version__}"
