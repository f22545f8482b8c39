"""Every row right: one row per op call in `trace` and `train` alike, rows that sum to every table, and each
conv and linear weight's gradient in its own row's grad_weight column, whichever weights need one."""
from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cnncost.formulas import CORE
from cnncost.trace.counter import count_module
from cnncost.trace.step import targets_for
from cnncost.trace.train import MACS, trace_training


class Reused(nn.Module):
    """One conv called twice, two concatenations, a skip connection around a pool (a U-Net's shape)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2)
        self.head = nn.Conv2d(16, 2, 1)

    def forward(self, x):
        a = self.conv(x)
        b = self.conv(a)  # the same module again
        skip = torch.cat([a, b], 1)  # 8 channels
        down = self.up(self.pool(skip))
        return self.head(torch.cat([skip, down], 1))  # 16 channels


def test_each_call_is_its_own_row_in_trace_and_train():
    x = torch.empty(2, 4, 8, 8, device="meta")
    with torch.device("meta"):
        model = Reused()
    traced = count_module(model, x).table
    trained = trace_training(model, x, targets_for(2)).table
    forward = trained[(trained.forward_macs > 0) | (trained.kind == "concat")]  # not the loss's, not fork adds
    # conv twice, cat twice: each call its own row, in call order, in both
    assert list(traced.name) == ["conv", "conv", "(model)", "pool", "up", "(model)", "head"]
    assert list(zip(forward.name, forward.kind))[:len(traced)] == list(zip(traced.name, traced.kind))
    assert list(traced.kind) == ["conv2d", "conv2d", "concat", "maxpool2d", "upsample_nearest", "concat", "conv2d"]
    # conv: 2 * 4 * 8 * 8 outputs * 4 * 3 * 3 taps = 18,432 MACs per call, and each call's own shapes
    assert traced.macs.tolist()[:2] == [18_432, 18_432]
    assert traced.out_shape.tolist()[2] == "2x8x8x8" and traced.out_shape.tolist()[5] == "2x16x8x8"
    # the pool's gradient is its own (each output's gradient added at its argmax: 2 * 8 * 4 * 4 = 256); the adds of
    # the skip connection's gradients are an elementwise row of their own, never inside the pool's row
    pool = trained[trained.name == "pool"]
    assert pool.category.tolist()[0] == "pool" and pool.grad_input_macs.tolist()[0] == 2 * 8 * 4 * 4
    assert set(pool.category) <= {"pool", "elementwise"}
    sums = trained.groupby("category")[list(MACS)].sum()
    for category, row in sums.iterrows():
        assert all(row[c] == trained[trained.category == category][c].sum() for c in MACS)


LAYERS = st.lists(st.sampled_from(["conv3", "conv1", "dwconv", "bn", "relu", "pool"]), min_size=1, max_size=5)


def build(layers: list[str], width: int) -> tuple[nn.Module, list[tuple[nn.Module, int]]]:
    """A small CNN from the op families, and each conv / linear module with its forward MACs at 2 x 3 x 8 x 8."""
    modules, convs, channels, side = [], [], 3, 8
    for name in layers:
        if name in ("conv3", "conv1", "dwconv"):
            out = channels if name == "dwconv" else width
            k = 1 if name == "conv1" else 3
            m = nn.Conv2d(channels, out, k, padding=k // 2, groups=channels if name == "dwconv" else 1)
            convs.append((m, 2 * out * side * side * (channels // m.groups) * k * k))
            channels = out
        elif name == "bn":
            m = nn.BatchNorm2d(channels)
        elif name == "relu":
            m = nn.ReLU()
        else:
            if side < 2:
                continue
            m, side = nn.MaxPool2d(2), side // 2
        modules.append(m)
    fc = nn.Linear(channels * side * side, 5)
    convs.append((fc, 2 * channels * side * side * 5))  # 2 rows x in x out
    return nn.Sequential(*modules, nn.Flatten(), fc), convs


@settings(max_examples=25, deadline=None)
@given(layers=LAYERS, width=st.integers(2, 6), frozen=st.lists(st.booleans(), min_size=8, max_size=8))
def test_random_models_rows_sum_and_weight_gradients_are_grad_weight(layers, width, frozen):
    model, weighted = build(layers, width)
    for (module, _), freeze in zip(weighted[:-1], frozen):  # the head always trains: the step has a parameter
        module.weight.requires_grad_(not freeze)
    result = trace_training(model, torch.randn(2, 3, 8, 8), targets_for(2, "cpu"), device="cpu")
    table = result.table
    # the rows sum to the category table in every column
    for column in (*MACS, "grad_bias_adds"):
        assert result.by_category[column].sum() == table[column].sum()
        assert all(result.by_category.at[c, column] == table[table.category == c][column].sum()
                   for c in result.by_category.index)
    # each conv / linear row's grad_weight is its forward's MACs (dW = X^T dY) when its weight needs a gradient
    core = table[table.category.isin(CORE) & (table.forward_macs > 0)]
    assert len(core) == len(weighted)
    for (module, macs), row in zip(weighted, core.itertuples()):
        assert row.forward_macs == macs
        assert row.grad_weight_macs == (macs if module.weight.requires_grad else 0)


def test_attention_weights_gradients_are_grad_weight_in_their_own_rows():
    with torch.device("meta"):
        layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
    result = trace_training(layer, torch.empty(2, 10, 32, device="meta"), targets_for(2))
    table = result.table.set_index("name")
    tokens = 2 * 10
    # dW = X^T dY: the forward's MACs for each weight: in_proj 20 x 32 x 96, out_proj 20 x 32 x 32, the MLP's
    # 20 x 32 x 64 and 20 x 64 x 32
    assert table.at["self_attn.q_proj", "grad_weight_macs"] == tokens * 32 * 96
    assert table.at["self_attn.out_proj", "grad_weight_macs"] == tokens * 32 * 32
    assert result.core("grad_weight_macs") == tokens * (32 * 96 + 32 * 32 + 32 * 64 + 64 * 32)
    # out_proj's parameters and its update are on its own row, not a stray row after the head
    assert table.at["self_attn.out_proj", "params"] == 32 * 32 + 32
    assert table.at["self_attn.out_proj", "optimizer_macs"] > 0
    assert list(result.table.name).count("self_attn.out_proj") == 1


def test_ops_that_compute_nothing_are_free():
    """Checks and markers (torch._assert_async, as the gemma ViT encoders run) are no row and no unsupported op."""
    class Checks(nn.Module):
        def forward(self, x):
            torch._assert_async(x.sum() > -1e9)
            return x * 2

    result = count_module(Checks(), torch.ones(3))
    assert not result.unsupported and list(result.table.kind) == ["sum", "gt", "mul"]


def tiny_mask_rcnn():
    """A Mask R-CNN small enough to run in a test: a one-conv backbone, 64 px images, 20 proposals."""
    import torchvision
    from torchvision.models.detection import MaskRCNN
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU())
    backbone.out_channels = 8
    anchors = torchvision.models.detection.anchor_utils.AnchorGenerator(((16, 32),), ((1.0,),))
    pool = torchvision.ops.MultiScaleRoIAlign(["0"], 7, 2)
    masks = torchvision.ops.MultiScaleRoIAlign(["0"], 14, 2)
    model = MaskRCNN(backbone, num_classes=3, min_size=64, max_size=64, rpn_anchor_generator=anchors,
                     box_roi_pool=pool, mask_roi_pool=masks, rpn_post_nms_top_n_test=20)
    for p in model.parameters():  # no weights: every detection scores alike, as cnncost builds torchvision models
        torch.nn.init.zeros_(p)
    return model.eval()


def test_detection_heads_run_on_the_stated_detections():
    from cnncost.trace import count
    from cnncost.trace.models import detection_rule
    image = [torch.rand(3, 64, 64)]
    macs = {}
    for n in (5, 10):
        table = count(detection_rule(tiny_mask_rcnn(), n), inputs=(image,), device="cpu").table
        heads = table[table.name.str.startswith("roi_heads.mask_head") & (table.category == "conv")]
        macs[n] = int(heads.macs.sum())
        # the box head runs on the 20 proposals whatever the detections: fc6 20 x (8 x 7 x 7) x 1024
        fc6 = table[table.name == "roi_heads.box_head.fc6"]
        assert int(fc6.macs.sum()) == 20 * 8 * 7 * 7 * 1024
    # the mask head's 4 convs (8 -> 256, then 256 -> 256, 3x3 on 14 x 14) run once per detection
    per_detection = 14 * 14 * 9 * (8 * 256 + 3 * 256 * 256)
    assert macs[5] == 5 * per_detection and macs[10] == 10 * per_detection


def test_detection_rule_is_stated_in_the_json_and_settable(capsys):
    import json

    from cnncost.cli import run
    assert run(["trace", "fasterrcnn_mobilenet_v3_large_320_fpn", "--detections", "7", "-f", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["assumptions"] == {"proposals_per_image": 150, "detections_per_image": 7}
    assert "every head runs on 7 detections per image" in err
    assert run(["trace", "resnet18", "--detections", "7"]) == 2
    assert "--detections applies to torchvision's detection models" in capsys.readouterr().err
