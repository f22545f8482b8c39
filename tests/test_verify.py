"""verify: analytic specs against real models, layer by layer, and every tool's total explained by named causes."""
import functools

import pytest
import torch

from cnncost import specs
from cnncost.specs import ModelEntry
from cnncost.trace.adapters import fvcore_result, ptflops_aten_result, ptflops_result
from cnncost.trace.models import load, torchvision_meta
from cnncost.verify import TOOL_NAMES, verify_model

EXACT = [n for n, e in specs.MODELS.items() if e.torchvision]  # specs that claim to be a torchvision model
PAPER = [n for n, e in specs.MODELS.items() if not e.torchvision and n not in ("densenet264",)]
SUBSET = ["resnet50", "resnext50_32x4d", "googlenet", "densenet121", "efficientnet_b0", "alexnet", "vgg16"]
CORE = ("conv", "linear")


@functools.lru_cache(maxsize=None)
def checked(name: str, tools: tuple = ("fvcore", "ptflops", "ptflops-aten", "torch")):
    """verify_model() once per model and tool set per session (fvcore and ptflops run a real CPU forward)."""
    return verify_model(name, tools=tools)


@pytest.mark.parametrize("name", EXACT + ["densenet264"])
def test_every_conv_and_linear_layer_matches_the_real_model(name):
    """Analytic vs our meta-device trace, per layer, and torch's counter: conv + linear = FLOPs / 2."""
    v = checked(name, ("torch",))
    assert v.ok, v.mismatches
    core = v.layers[v.layers.category.isin(CORE)]
    assert (core.analytic_macs == core.trace_macs).all()
    assert v.tools["torch"].core_macs == v.trace.core_macs
    assert v.analytic.total("params") == v.trace.total("params")
    assert not [c for c in v.causes if c["cause"] == "unexplained"]


@pytest.mark.parametrize("name", EXACT)
def test_parameters_match_torchvision(name):
    """Our per-tensor parameter count against the model's own and torchvision's published num_params."""
    v = checked(name, ("torch",))
    assert v.trace.total("params") == sum(p.numel() for p in load(name).build("meta").parameters())
    published = torchvision_meta(specs.MODELS[name].torchvision).get("num_params")
    assert published in (None, v.trace.total("params"))


@pytest.mark.parametrize("name", EXACT)
def test_core_macs_match_torchvision_ops(name):
    """torchvision's _ops is conv + linear GMACs at the published resolution, rounded to 3 decimals."""
    ops = torchvision_meta(specs.MODELS[name].torchvision).get("_ops")
    if ops is None:
        pytest.skip("no _ops metadata")
    assert round(checked(name, ("torch",)).trace.core_macs / 1e9, 3) == pytest.approx(ops, abs=1e-9)


@pytest.mark.parametrize("name", SUBSET)
def test_analytic_layers_equal_fvcore_modules(name):
    """Per conv/linear layer, the analytic spec's MACs equal fvcore's per-module count exactly; params too."""
    v = checked(name)
    core = v.layers[v.layers.category.isin(CORE)]
    assert len(core) > 0 and (core.analytic_macs == core.fvcore_macs).all()
    assert v.analytic.total("params") == v.tools["fvcore"].total("params") == v.trace.total("params")


@pytest.mark.parametrize("name", SUBSET)
def test_every_tool_difference_has_a_named_cause(name):
    v = checked(name)
    assert not v.errors
    assert not [c for c in v.causes if c["cause"] == "unexplained"]
    for tool, result in v.tools.items():  # tool total = our total + the named differences, category by category
        named = sum(c["difference"] for c in v.causes if c["source"] == TOOL_NAMES[tool] and c["difference"])
        assert result.total() == v.trace.total() + named, tool


def test_resnet50_figures_from_the_issue():
    """The four published-in-the-wild ResNet-50 numbers, each decomposed into our categories."""
    v = checked("resnet50")
    conv, linear = 4_087_136_256, 2_048_000  # torchvision _ops 4.089 G = conv + linear
    bn = 11_113_984  # elements through the 53 batch norms (1 MAC each)
    relu, maxpool, avgpool = 9_608_704, 112 * 112 // 4 * 64 * 9, 2048 * 7 * 7  # maxpool: 56x56x64 outputs x 3x3
    adds = 5_519_360  # the 16 residual adds
    assert v.trace.by_category() == {"conv": conv, "linear": linear, "norm": bn, "activation": relu,
                                     "pool": maxpool + avgpool, "elementwise": adds, "other": 0}
    assert v.tools["torch"].total() * 2 == 8_178_368_512 == 2 * (conv + linear)
    assert v.tools["fvcore"].total() == 4_111_512_576 == conv + linear + 2 * bn + avgpool
    ptflops_pool = 2 * (64 * 112 * 112) + 2 * avgpool  # module hook + F.* patch, each the input elements
    assert v.tools["ptflops"].total() == 4_132_436_968 == conv + linear + 1000 + 2 * bn + 2 * relu + ptflops_pool
    assert v.tools["ptflops-aten"].total() == 4_089_185_256 == conv + linear + 1000  # + the fc's bias adds
    assert v.meta["_ops"] == 4.089 and round((conv + linear) / 1e9, 3) == 4.089
    causes = {(c["source"], c["cause"]) for c in v.causes}
    assert {("fvcore", "batch norm counted x2"), ("ptflops", "double counting"), ("ptflops", "bias adds"),
            ("torch", "MAC vs FLOP"), ("fvcore", "elementwise ops not counted"),
            ("torchvision metadata", "rounded")} <= causes


@pytest.mark.parametrize("name", ["resnet50", "efficientnet_b0", "densenet121"])
def test_ptflops_adapters_reproduce_ptflops_totals(name):
    """Our per-module ptflops runs add up to ptflops's own public totals (pytorch and aten backends)."""
    from ptflops import get_model_complexity_info
    source = load(name)
    model, x = source.build("cpu"), source.input(1, None, "cpu")
    size = (3, source.resolution, source.resolution)
    for backend, adapter in (("pytorch", ptflops_result), ("aten", ptflops_aten_result)):
        macs, _ = get_model_complexity_info(model, size, as_strings=False, print_per_layer_stat=False,
                                            backend=backend)
        assert adapter(model, x, name).total() == macs, backend


def test_ptflops_batch_quirk_is_reproduced():
    """At batch 2 ptflops divides its module hooks' counts by 2 but not its functional patches': say its number."""
    from ptflops import get_model_complexity_info
    source = load("resnet18")
    model, x = source.build("cpu"), source.input(2, 64, "cpu")
    macs, _ = get_model_complexity_info(model, (3, 64, 64), input_constructor=lambda _: x, as_strings=False,
                                        print_per_layer_stat=False)
    v = verify_model("resnet18", size=64, batch=2, tools=("ptflops",))
    quirk = next(c for c in v.causes if c["cause"] == "per-image average")
    assert f"reports {macs:,} at batch 2" in quirk["why"]
    assert v.tools["ptflops"].total() != macs


def test_fvcore_adapter_reproduces_fvcore_total():
    from fvcore.nn import FlopCountAnalysis
    source = load("resnet18")
    model, x = source.build("cpu"), source.input(1, None, "cpu")
    ours = fvcore_result(model, x, "resnet18")
    total = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).total()
    assert ours.total() == total and ours.unsupported == {"aten::max_pool2d": 1, "aten::add_": 8}


@pytest.mark.parametrize("name", PAPER)
def test_paper_variants_are_explained_not_failed(name):
    v = checked(name, ())
    assert v.ok and v.paper_note
    assert {c["cause"] for c in v.causes if c["source"] == "analytic"} == {"paper vs implementation"}


def test_googlenet_paper_differs_in_the_third_branch():
    """The paper's 5x5 where torchvision has 3x3: inception3a.branch3.1 costs (28*28*32)*(5*5*16) vs (3*3*16)."""
    v = checked("googlenet_paper", ())
    row = v.layers[(v.layers.name == "inception3a.branch3.1.conv")].iloc[0]
    assert (row.analytic_macs, row.trace_macs) == ((28 * 28 * 32) * (5 * 5 * 16), (28 * 28 * 32) * (3 * 3 * 16))
    assert "5x5" in v.paper_note or "3x3" in v.paper_note


def test_a_wrong_spec_is_a_mismatch(monkeypatch):
    """A spec that claims to be torchvision's resnet18 but builds a ResNet-34 fails on conv layers."""
    wrong = ModelEntry("resnet18_wrong", specs.MODELS["resnet34"].build, 224, {"depth": 34}, "resnet18")
    monkeypatch.setitem(specs.MODELS, "resnet18_wrong", wrong)
    v = verify_model("resnet18_wrong", tools=())
    assert not v.ok
    assert any(m.startswith("layer1.2.conv1 (conv): macs analytic") for m in v.mismatches)


def test_aux_heads_explain_the_parameter_gap():
    v = verify_model("googlenet", tools=(), aux=True)
    aux = [c for c in v.causes if c["cause"] == "auxiliary heads"]
    assert aux and aux[0]["difference"] == v.meta["num_params"] - v.trace.total("params") < 0


def test_user_model_has_no_analytic_side(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text("from torch import nn\n\ndef make(width=4):\n    return nn.Sequential(nn.Conv2d(3, width, 3), "
                    "nn.ReLU())\n")
    v = verify_model(f"{path}:make", size=10, tools=("torch",), kwargs={"width": 8})
    assert v.analytic is None and v.ok
    assert v.trace.core_macs == v.tools["torch"].core_macs == (8 * 8 * 8) * (3 * 3 * 3)  # 512 x 27 = 13,824
    assert torch.__version__  # the user model ran through torch on the meta device
