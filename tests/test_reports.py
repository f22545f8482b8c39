"""The committed reports/ are up to date, complete, and their numbers are the library's (and torchvision's)."""
import re
from pathlib import Path

import pytest

from cnncost import analyze
from cnncost.errors import CnnCostError
from cnncost.report import generate
from cnncost.report.verification import model_section, summary

COMMITTED = Path(__file__).resolve().parent.parent / "reports"
# Verifying every model runs fvcore and ptflops on real tensors (minutes): regenerate two of them here and
# check that their sections stand verbatim in the committed report.
VERIFIED = ("resnet50", "efficientnet_b0")


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    generate(out, verify_models=VERIFIED, results=COMMITTED.parent / "results")
    return out


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_regenerated_files_are_the_committed_files(fresh):
    assert files(fresh) == files(COMMITTED)
    stale = [name for name in sorted(files(fresh)) if name != "verification.md"
             and (fresh / name).read_bytes() != (COMMITTED / name).read_bytes()]
    assert not stale, f"run `make report` and commit reports/: {stale}"


def test_committed_verification_holds_the_regenerated_sections():
    committed = (COMMITTED / "verification.md").read_text()
    for name in VERIFIED:
        assert model_section(name) in committed, name
    cells = lambda line: tuple(c.strip() for c in line.strip("|").split("|"))  # noqa: E731 (widths vary)
    committed_rows = {cells(line) for line in committed.split("## Summary")[1].split("\n## ")[0].splitlines()
                      if line.startswith("|")}
    assert {cells(line) for line in summary(VERIFIED).splitlines()[2:]} <= committed_rows


def test_every_linked_image_and_report_exists():
    links = []
    for page in COMMITTED.rglob("*.md"):
        for target in re.findall(r"\]\(([^)]+)\)", page.read_text()):
            links.append((page, target))
    missing = [f"{p.name} -> {t}" for p, t in links if not resolves(p, t)]
    assert links and not missing, missing


def resolves(page, target: str) -> bool:
    """A link's file exists and, for 'file.md#anchor', the file has a heading whose GitHub slug is the anchor."""
    path, _, anchor = target.partition("#")
    file = (page.parent / path).resolve()
    if not file.is_file():
        return False
    headings = re.findall(r"^#+ (.+)$", file.read_text(), re.MULTILINE) if anchor else []
    slug = lambda title: re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")  # noqa: E731 (GitHub's rule)
    return not anchor or anchor in {slug(h) for h in headings}


def overview_integers() -> dict[str, dict[str, int]]:
    """The overview's table of exact integers, parsed from the committed markdown."""
    text = (COMMITTED / "overview.md").read_text().split("Exact integers:")[1]
    rows = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("|")]
    header = [h.strip() for h in rows[0]]
    return {r[0].strip(): {h: int(v.strip().replace(",", "")) for h, v in zip(header[1:], r[1:])}
            for r in rows[2:]}


def test_overview_numbers_are_the_library_values():
    table = overview_integers()
    assert len(table) == 18
    for model, row in table.items():
        result = analyze(model)
        assert row == {"params": result.total("params"), "core_macs": result.core_macs,
                       "activations": result.total("activations")}, model


def test_overview_params_and_macs_match_torchvision_metadata():
    from torchvision.models import get_model_weights
    for model, row in overview_integers().items():
        if model == "densenet264":  # not in torchvision
            continue
        meta = get_model_weights(model).DEFAULT.meta
        assert row["params"] == meta["num_params"], model
        assert round(row["core_macs"] / 1e9, 3) == meta["_ops"], model


def test_lecture_bottleneck_in_lessons():
    text = (COMMITTED / "lessons.md").read_text()
    assert f"(14 x 14 x 48) x (5 x 5 x 480) = {(14 * 14 * 48) * (5 * 5 * 480):,}" in text
    assert f"total {(14 * 14 * 16) * 480 + (14 * 14 * 48) * (5 * 5 * 16):,} MACs" in text


def test_report_into_a_file_is_an_error(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(CnnCostError, match="not a directory"):
        generate(target)
    assert target.read_text() == "x"


def test_alike_layers_are_one_row_in_the_costliest_table():
    from cnncost.report.model import costliest, pattern
    rows = {r["layer"]: r for r in costliest(analyze("resnet50"))}
    # layer3's blocks 1..5 share conv2: 256 -> 256, 3x3 on 14x14, (14 * 14 * 256) * (3 * 3 * 256) MACs each
    stage3 = rows["layer3.*.conv2"]
    assert stage3["count"] == 5 and stage3["macs"] == (14 * 14 * 256) * (3 * 3 * 256) == 115_605_504
    assert stage3["share_pct"] == round(100 * 5 * 115_605_504 / analyze("resnet50").total("macs"), 1)
    assert rows["layer3.0.conv2"]["count"] == 1  # stride 2 from 28x28: the same MACs, not the same layer
    assert len(rows) == 10 and pattern(["a.1.b", "a.2.b"]) == "a.*.b" and pattern(["x", "y.z"]) == "x and 1 more"


def test_depth_says_what_it_counts():
    from cnncost.report.model import depth_note
    # ResNet-50: 1 stem conv + 16 blocks x 3 convs + fc = 50 on the path; the 4 downsample convs beside it
    assert depth_note(analyze("resnet50")) == (
        "depth 50 = weight layers (conv, linear) on the longest path from input to output; its other 4 of 54 "
        "weight layers are projection shortcuts (downsample) beside that path")
    assert depth_note(analyze("vgg16")).endswith(": all 16 of them")  # 13 conv + 3 fc, one path


def test_the_roofline_marks_its_ridge_point(tmp_path, monkeypatch):
    from cnncost.report import model
    points, ridge = model.roofline(analyze("resnet50", dtype=model.ROOF_DTYPE))
    plt = model.pyplot()
    captured = {}
    monkeypatch.setattr(model, "save", lambda fig, path: captured.update(fig=fig))
    model.plot_roofline(points, ridge, tmp_path / "r.png", "resnet50")
    ax = captured["fig"].axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert any(label.startswith(f"ridge point: {ridge:.0f} FLOP/byte") for label in labels)
    assert any(list(line.get_xdata()) == [ridge, ridge] for line in ax.get_lines())  # the vertical at the ridge
    plt.close(captured["fig"])


def test_benchmarks_without_data_say_why(tmp_path, monkeypatch):
    from cnncost.report import benchmarks
    monkeypatch.chdir(tmp_path)
    (why,) = benchmarks.problems(Path("results"))
    assert "benchmarks.md has no data: there is no folder results/ here" in why and str(tmp_path) in why
    (tmp_path / "results").mkdir()
    (why,) = benchmarks.problems(Path("results"))
    assert "no bench-*.csv in" in why


def test_benchmarks_puts_predict_beside_every_measured_row(tmp_path):
    """Each measured row gets predict's images/s on the calibrated profile of its CPU at its threads; a user's file
    is not run; a CPU without a profile at those threads gets no prediction, and the page says why."""
    import pandas as pd

    from cnncost.bench.plots import measured
    from cnncost.report.benchmarks import against
    from cnncost.speed.device import load
    from cnncost.speed.estimate import predict_on

    results = COMMITTED.parent / "results"
    profile = load(results / "device-cpu-amd-epyc-2t.json")
    rows = pd.read_csv(results / "bench-cpu-amd-epyc.csv").head(2)
    rows["model"], rows["batch"], rows["size"], rows["mode"] = ["resnet18", "net.py:make"], 2, 64, "infer"
    rows["device_name"], rows["threads"], rows["img_per_s"] = profile.name, profile.threads, 100.0
    csv = tmp_path / "bench-x.csv"
    rows.to_csv(csv, index=False)
    page = against(measured(csv), results)
    expected = predict_on(profile, "resnet18", "fp32", 2, 64).img_per_s
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
             for line in page.splitlines() if line.startswith("| ")}
    assert float(cells["resnet18"][5]) == pytest.approx(expected, rel=5e-4)  # 4 significant digits shown
    assert float(cells["resnet18"][6]) == pytest.approx(100 * (expected / 100.0 - 1), abs=0.05)
    assert cells["net.py:make"][5:] == ["", ""]
    assert "over 1 of 2 rows" in page and "cpu-amd-epyc-2t" in page
    rows["threads"] = 7
    rows.to_csv(csv, index=False)
    assert against(measured(csv), results).startswith("No prediction beside these rows")
