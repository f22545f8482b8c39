"""Analytic specs against independent numbers: torchvision's metadata and modules, torch's counter, the papers.

Expected values come from torchvision (`num_params`, `_ops`, the modules' parameters and output
shapes, torch.utils.flop_counter on the meta device) or are derived here from the papers' tables.
"""
from __future__ import annotations

import collections
import math

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import get_model_weights

import cnncost
from cnncost.catalog import compare, stage_rows
from cnncost.errors import CnnCostError
from cnncost.result import Result
from cnncost.specs import MODELS, build, resolve
from cnncost.specs.efficientnet import VARIANTS, make_divisible

TORCHVISION = [name for name, entry in MODELS.items() if entry.torchvision]
# Variants torchvision lacks, each checked by its own test below.
PAPER_ONLY = {"alexnet_paper", "alexnet_paper_2gpu", "googlenet_paper", "resnet50_v1", "resnet101_v1",
              "resnet152_v1", "densenet264"}
SKIPPED_MODULES = (torch.nn.Dropout, torchvision.ops.StochasticDepth)


def core_macs(name: str, size: int | None = None) -> int:
    return cnncost.analyze(name, size=size).core_macs


def params(name: str) -> int:
    return cnncost.analyze(name).total("params")


def one_decimal(x: float) -> set[float]:
    """A number as a paper prints it with one decimal: rounded, or truncated."""
    return {round(x, 1), math.floor(x * 10) / 10}


def whole(x: float) -> set[int]:
    """A number as a paper prints it without decimals: rounded, or truncated."""
    return {round(x), math.floor(x)}


# -- every model torchvision has: its metadata -------------------------------------------------


def test_every_model_is_checked_independently():
    assert set(MODELS) == set(TORCHVISION) | PAPER_ONLY


def test_params_and_macs_equal_torchvision_metadata():
    """num_params exactly, conv + linear GMACs to torchvision's 3 decimals, at the weights' crop size."""
    mismatches = []
    for name in TORCHVISION:
        entry = MODELS[name]
        weights = get_model_weights(entry.torchvision).DEFAULT
        crop = weights.transforms().crop_size[0]
        result = cnncost.analyze(name)
        got = (entry.resolution, result.total("params"), round(result.core_macs / 1e9, 3))
        want = (crop, weights.meta["num_params"], weights.meta["_ops"])
        if got != want:
            mismatches.append(f"{name}: (size, params, GMACs) {got} != torchvision {want}")
    assert not mismatches, "\n".join(mismatches)


# -- every model torchvision has: module by module ---------------------------------------------


def traced(model: torch.nn.Module, size: int):
    """Leaf modules' output shapes per call, parameters, and conv/linear MACs (torch's counter / 2), on meta."""
    leaves = {n: m for n, m in model.named_modules() if n and not list(m.children())}
    shapes = collections.defaultdict(list)
    for n, m in leaves.items():
        m.register_forward_hook(lambda m, i, o, n=n: shapes[n].append(tuple(o.shape)))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty(1, 3, size, size, device="meta"))
    root = type(model).__name__
    macs = {k.removeprefix(root + "."): sum(v.values()) // 2 for k, v in counter.get_flop_counts().items()}
    weights = {n: sum(p.numel() for p in m.parameters()) for n, m in leaves.items()}
    skip = {n for n, m in leaves.items() if isinstance(m, SKIPPED_MODULES)}
    return shapes, weights, {n: macs.get(n, 0) for n in leaves}, skip, {n for n, _ in model.named_modules()}


def torchvision_model(name: str) -> torch.nn.Module:
    kwargs = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    with torch.device("meta"):
        return torchvision.models.get_model(name, weights=None, **kwargs).eval()


def per_name(table):
    """Rows grouped by module name: output shapes in call order, summed params and core MACs."""
    shapes, weights, macs = collections.defaultdict(list), collections.Counter(), collections.Counter()
    for row in table.itertuples():
        shapes[row.name].append(tuple(int(s) for s in row.out_shape.split("x")))
        weights[row.name] += row.params
        macs[row.name] += row.macs if row.category in ("conv", "linear") else 0
    return shapes, weights, macs


def layer_mismatches(table, model: torch.nn.Module, size: int) -> list[str]:
    """Every leaf module vs the rows of the same name; every row named after a real module."""
    shapes, weights, macs, skip, modules = traced(model, size)
    ours = per_name(table)
    bad = [f"{n}: {what} {theirs[n]} != {mine.get(n)}" for what, theirs, mine in
           (("shapes", shapes, ours[0]), ("params", weights, ours[1]), ("MACs", macs, ours[2]))
           for n in theirs if n not in skip and theirs[n] != mine.get(n, [] if what == "shapes" else 0)]
    return bad + [f"row {n} names no module" for n in ours[0] if n not in modules and n != "(model)"]


@pytest.mark.parametrize("name", TORCHVISION)
def test_layers_match_torchvision_modules(name):
    """Names, output shapes per call, parameters and MACs per module equal the real model's (meta device)."""
    entry = MODELS[name]
    table = cnncost.analyze(name).table
    assert layer_mismatches(table, torchvision_model(entry.torchvision), entry.resolution) == []


# -- models torchvision lacks: rebuilt from torchvision's classes where it can ---------------------


def test_densenet264_equals_torchvision_densenet_class():
    with torch.device("meta"):
        model = torchvision.models.DenseNet(growth_rate=32, block_config=(6, 12, 64, 48), num_init_features=64)
    assert layer_mismatches(cnncost.analyze("densenet264").table, model.eval(), 224) == []


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_resnet_v1_equals_torchvision_with_the_stride_moved_to_the_first_1x1(depth):
    model = torchvision_model(f"resnet{depth}")
    for stage in (model.layer2, model.layer3, model.layer4):
        stage[0].conv1.stride, stage[0].conv2.stride = (2, 2), (1, 1)
    assert layer_mismatches(cnncost.analyze(f"resnet{depth}_v1").table, model, 224) == []


# -- the papers ----------------------------------------------------------------------------------


def test_resnet_paper_flops_are_v1_and_resnext_paper_flops_are_v1_5():
    """ResNet paper Table 1: 1.8, 3.6, 3.8, 7.6, 11.3 GFLOPs (= GMACs), printed with one decimal."""
    for name, paper in (("resnet18", 1.8), ("resnet34", 3.6), ("resnet50_v1", 3.8), ("resnet101_v1", 7.6),
                        ("resnet152_v1", 11.3)):
        assert paper in one_decimal(core_macs(name) / 1e9), name
    # v1.5 runs each down-sampling block's first 1x1 at its input resolution, 4x the positions:
    # layer2.0 (56*56*128*256), layer3.0 (28*28*256*512), layer4.0 (14*14*512*1024), minus their v1 quarter.
    extra = sum(h * h * w * c_in * 3 // 4 for h, w, c_in in ((56, 128, 256), (28, 256, 512), (14, 512, 1024)))
    assert extra == 3 * 77_070_336 == 231_211_008
    assert core_macs("resnet50") - core_macs("resnet50_v1") == extra
    assert round(core_macs("resnet50") / 1e9, 1) == 4.1  # the ResNeXt paper's ResNet-50
    # 3.6G -> 3.8G: bottlenecks make ResNet-34 into ResNet-50 (v1) for 0.19 GMACs more.
    assert round((core_macs("resnet50_v1") - core_macs("resnet34")) / 1e9, 2) == 0.19


def test_lecture_resnet50_vs_resnext50_table():
    """The ResNeXt paper's Table 1: 25.5M / 4.1G against 25.0M / 4.2G, and the stages' structure."""
    totals, stages = compare(["resnet50", "resnext50"], metadata=False)
    # printed with one decimal: 25,557,032 -> 25.5 (truncated), 25,028,904 -> 25.0; 4.09G -> 4.1, 4.23G -> 4.2
    assert all(paper in one_decimal(p / 1e6) for p, paper in zip(totals.params, (25.5, 25.0)))
    assert all(paper in one_decimal(m / 1e9) for m, paper in zip(totals.core_macs, (4.1, 4.2)))
    table = {(r.stage, r.model): r for r in stages.itertuples()}
    widths = {"conv2": (64, 256, 3, 56), "conv3": (128, 512, 4, 28), "conv4": (256, 1024, 6, 14),
              "conv5": (512, 2048, 3, 7)}
    for stage, (w, out, n, hw) in widths.items():
        pool = "max pool 3x3/2, " if stage == "conv2" else ""
        assert table[stage, "resnet50"].structure == f"{pool}[1x1 {w}, 3x3 {w}, 1x1 {out}] x{n}"
        assert table[stage, "resnext50_32x4d"].structure == f"{pool}[1x1 {2 * w}, 3x3 {2 * w} g32, 1x1 {out}] x{n}"
        assert table[stage, "resnet50"].output == table[stage, "resnext50_32x4d"].output == f"{hw}x{hw}x{out}"
    assert table["conv1", "resnet50"].structure == "7x7 64" and table["conv1", "resnet50"].output == "112x112x64"
    assert table["fc", "resnext50_32x4d"].structure == "global avg pool, fc 1000"
    assert list(dict.fromkeys(stages.stage)) == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc"]


def test_alexnet_paper_table_shapes_params_and_macs():
    """227x227 input: 55x55x96, 27x27x96, 27x27x256, 13x13x256, 13x13x384, 13x13x384, 13x13x256, 6x6x256."""
    table = cnncost.analyze("alexnet_paper").table
    convs_pools = table[table.kind.isin(["conv2d", "maxpool2d"])]
    assert list(convs_pools.out_shape) == ["1x96x55x55", "1x96x27x27", "1x256x27x27", "1x256x13x13",
                                           "1x384x13x13", "1x384x13x13", "1x256x13x13", "1x256x6x6"]
    assert list(table[table.kind == "linear"].out_shape) == ["1x4096", "1x4096", "1x1000"]
    # weights + biases: conv1 11*11*3*96, conv2 5*5*96*256, conv3 3*3*256*384, conv4 3*3*384*384, conv5 3*3*384*256,
    # fc6 6*6*256*4096, fc7 4096*4096, fc8 4096*1000
    convs = [(11 * 11 * 3, 96), (5 * 5 * 96, 256), (3 * 3 * 256, 384), (3 * 3 * 384, 384), (3 * 3 * 384, 256)]
    fcs = [(6 * 6 * 256, 4096), (4096, 4096), (4096, 1000)]
    assert sum(k * c + c for k, c in convs + fcs) == 62_378_344 == params("alexnet_paper")
    # Two GPUs: conv2, conv4 and conv5 see half the input channels.
    halved = sum(k // 2 * c for (k, c), g in zip(convs, (1, 2, 1, 2, 2)) if g == 2)
    assert 62_378_344 - halved == 60_965_224 == params("alexnet_paper_2gpu")
    assert core_macs("alexnet_paper") - core_macs("alexnet_paper_2gpu") == (
        27 * 27 * 256 * 5 * 5 * 48 + 13 * 13 * 384 * 3 * 3 * 192 + 13 * 13 * 256 * 3 * 3 * 192)
    assert table.out_shape.iloc[0] == "1x96x55x55" and table.macs.iloc[0] == 55 * 55 * 96 * 11 * 11 * 3


# The GoogLeNet paper's Table 1, ops in millions per row (conv2 is its "3x3 reduce + 3x3" row).
GOOGLENET_OPS = {"conv1": 118, "conv2": 360, "inception3a": 128, "inception3b": 304, "inception4a": 73,
                 "inception4b": 88, "inception4c": 100, "inception4d": 119, "inception4e": 170, "inception5a": 54,
                 "inception5b": 71, "fc": 1}
# (#5x5 reduce, #5x5, size) per module: the only convs torchvision runs as 3x3 instead of 5x5.
FIVE_BY_FIVE = {"inception3a": (16, 32, 28), "inception3b": (32, 96, 28), "inception4a": (16, 48, 14),
                "inception4b": (24, 64, 14), "inception4c": (24, 64, 14), "inception4d": (32, 64, 14),
                "inception4e": (32, 128, 14), "inception5a": (32, 128, 7), "inception5b": (48, 128, 7)}


def test_googlenet_paper_table_and_the_torchvision_difference():
    paper = {r["stage"]: r for r in stage_rows(cnncost.analyze("googlenet_paper"))}
    tv = {r["stage"]: r for r in stage_rows(cnncost.analyze("googlenet"))}
    for stage, millions in GOOGLENET_OPS.items():
        if stage != "inception5a":  # the paper's 54M disagrees with its own widths: 49 x 1,042,432 = 51.1M
            assert millions in whole(paper[stage]["core_macs"] / 1e6), stage
    assert paper["inception5a"]["core_macs"] == 7 * 7 * (832 * (256 + 160 + 32 + 128) + 9 * 160 * 320 + 25 * 32 * 128)
    for stage, (reduce, out, hw) in FIVE_BY_FIVE.items():  # (25 - 9) x reduce x out x H x W
        assert paper[stage]["core_macs"] - tv[stage]["core_macs"] == 16 * reduce * out * hw * hw, stage
    assert 1.5 in one_decimal(core_macs("googlenet_paper") / 1e9)  # "1.5 billion multiply-adds" (1.58, truncated)


# The EfficientNet paper's Table 2 (params, FLOPs = MACs) and Table 1/2's resolutions.
EFFICIENTNET_PAPER = {0: (5.3e6, 0.39e9), 1: (7.8e6, 0.70e9), 2: (9.2e6, 1.0e9), 3: (12e6, 1.8e9),
                      4: (19e6, 4.2e9), 5: (30e6, 9.9e9), 6: (43e6, 19e9), 7: (66e6, 37e9)}
RESOLUTIONS = {0: 224, 1: 240, 2: 260, 3: 300, 4: 380, 5: 456, 6: 528, 7: 600}
# Outside the paper's printed rounding, by no more than 5% (torch's counter and thop on other ports agree
# with the exact counts, so the gap is the paper's): B2 params 9.11M; B1, B4, B5, B7 MACs.
EFFICIENTNET_GAPS = {(2, "params"), (1, "macs"), (4, "macs"), (5, "macs"), (7, "macs")}


def printed(value: float, paper: float) -> bool:
    """Whether value rounds to the paper's figure at its printed precision, two significant digits."""
    step = 10 ** (math.floor(math.log10(paper)) - 1)
    return round(value / step) == round(paper / step)


def test_efficientnet_paper_params_and_flops():
    outside = set()
    for k, (paper_params, paper_macs) in EFFICIENTNET_PAPER.items():
        assert MODELS[f"efficientnet_b{k}"].paper["resolution"] == RESOLUTIONS[k]
        result = cnncost.analyze(f"efficientnet_b{k}", size=RESOLUTIONS[k])
        for what, ours, paper in (("params", result.total("params"), paper_params),
                                  ("macs", result.core_macs, paper_macs)):
            assert abs(ours / paper - 1) < 0.05, (k, what, ours)
            if not printed(ours, paper):
                outside.add((k, what))
    assert outside == EFFICIENTNET_GAPS


def test_efficientnet_rounding_equals_torchvision():
    from torchvision.models._utils import _make_divisible
    for channels in range(1, 400):
        for mult in (1.0, 1.1, 1.2, 1.4, 1.6, 1.8, 2.0, 6):
            assert make_divisible(channels * mult) == _make_divisible(channels * mult, 8), (channels, mult)


def test_efficientnet_coefficients_and_se_width():
    assert {k: v[:2] for k, v in VARIANTS.items()} == {0: (1.0, 1.0), 1: (1.0, 1.1), 2: (1.1, 1.2), 3: (1.2, 1.4),
                                                       4: (1.4, 1.8), 5: (1.6, 2.2), 6: (1.8, 2.6), 7: (2.0, 3.1)}
    table = cnncost.analyze("efficientnet_b0").table
    fc1 = table.set_index("name").out_shape
    # SE squeezes to a quarter of the block *input*: stage2's first block 16 -> 4, its second 24 -> 6.
    assert fc1["features.2.0.block.2.fc1"] == "1x4x1x1" and fc1["features.2.1.block.2.fc1"] == "1x6x1x1"


# -- bad input ----------------------------------------------------------------------------------


def test_unknown_model_lists_the_closest_names():
    with pytest.raises(CnnCostError, match=r"unknown model 'resnet5'; did you mean resnet50.*resnext50"):
        resolve("resnet5")


def test_aliases():
    assert resolve("resnext50").name == "resnext50_32x4d" and resolve("ResNeXt101").name == "resnext101_32x8d"
    assert resolve("inception_v1").name == "googlenet_paper" and resolve("effnet_b3").name == "efficientnet_b3"


@pytest.mark.parametrize("name, size, layer", [("alexnet", 32, "features.12"), ("vgg16", 16, "features.30"),
                                                ("densenet121", 8, "features.transition2.pool"),
                                                ("googlenet", 8, "maxpool2")])
def test_too_small_input_names_the_layer(name, size, layer):
    with pytest.raises(CnnCostError, match=rf"^{name}: layer {layer} \("):
        build(name, size=size)


@pytest.mark.parametrize("batch, size", [(0, 224), (1, 0), (-2, 224), (1, -1)])
def test_non_positive_batch_or_size(batch, size):
    with pytest.raises(CnnCostError, match="must be positive"):
        build("resnet50", batch=batch, size=size)


def test_batch_scales_work_not_weights():
    one, four = cnncost.analyze("resnet18"), cnncost.analyze("resnet18", batch=4)
    assert four.core_macs == 4 * one.core_macs and four.total("params") == one.total("params")
    assert Result.from_spec(build("resnet18", batch=4)).total("activations") == 4 * one.total("activations")
