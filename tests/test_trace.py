"""Our meta-device tracer: a custom model counted by hand, functional forms, meta vs CPU, aux heads, roll-up,
unsupported ops, any batch, fallback to the CPU. (Every registered model is traced in test_verify.)"""
import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import SqueezeExcitation

from cnncost.errors import CnnCostError
from cnncost.trace.counter import count_module, count_source
from cnncost.trace.table import rollup
from cnncost.trace.models import load

SUBSET = ["resnet50", "resnext50_32x4d", "googlenet", "densenet121", "efficientnet_b0", "alexnet", "vgg16"]


class Custom(nn.Module):
    """Grouped, dilated and depthwise convs, squeeze-excitation, a layer called twice, concat, a functional conv
    on a root parameter, a residual add, functional ReLU, adaptive pooling and a linear head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False)
        self.grouped = nn.Conv2d(16, 32, 3, padding=1, groups=4)
        self.act = nn.ReLU()
        self.dilated = nn.Conv2d(32, 32, 3, padding=2, dilation=2, bias=False)
        self.depthwise = nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False)
        self.se = SqueezeExcitation(32, 8)
        self.shared = nn.Conv2d(32, 32, 1, bias=False)
        self.mix = nn.Parameter(torch.zeros(64, 64, 1, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.act(self.grouped(self.stem(x)))
        a = self.shared(self.dilated(x))
        b = self.shared(self.se(self.depthwise(x)))
        y = F.relu(torch.cat([a, b], 1))
        y = y + F.conv2d(y, self.mix)
        return self.fc(torch.flatten(self.pool(y), 1))


# The custom model on 1x3x32x32, by hand. Every feature map after the stem is 16x16 (stride 2, padding 1).
HW = 16 * 16
STEM = (HW * 16) * (3 * 3 * 3)  # 4,096 x 27 = 110,592
GROUPED = (HW * 32) * (3 * 3 * 16 // 4)  # 8,192 x 36 = 294,912 (+ 8,192 bias adds)
DILATED = (HW * 32) * (3 * 3 * 32)  # 8,192 x 288 = 2,359,296
DEPTHWISE = (HW * 32) * (3 * 3 * 1)  # 8,192 x 9 = 73,728
SE_FC = 1 * 8 * 32  # fc1 32 -> 8 on 1x1: 256; fc2 8 -> 32: 256 (+ 8 and 32 bias adds)
SHARED = (HW * 32) * 32  # 262,144 per call, called twice
MIX = (HW * 64) * 64  # 16,384 x 64 = 1,048,576
FC = 64 * 10  # 640 (+ 10 bias adds)
PARAMS = {"stem": 16 * 27, "grouped": 32 * 36 + 32, "dilated": 32 * 288, "depthwise": 32 * 9,
          "se.fc1": 8 * 32 + 8, "se.fc2": 32 * 8 + 32, "shared": 32 * 32, "(model)": 64 * 64, "fc": 64 * 10 + 10}


@functools.lru_cache(maxsize=None)
def traced(name: str, device: str = "meta"):
    """Our trace of a registered model at batch 1, once per session."""
    return count_source(load(name), device=device)


@functools.lru_cache(maxsize=None)
def custom(device: str = "meta"):
    with torch.device(device):
        model = Custom()
    return count_module(model, torch.empty(1, 3, 32, 32, device=device) if device == "meta"
                        else torch.randn(1, 3, 32, 32), "custom")


def test_custom_model_by_category():
    r = custom()
    assert r.by_category() == {
        "conv": STEM + GROUPED + DILATED + DEPTHWISE + 2 * SE_FC + 2 * SHARED + MIX,  # 4,455,424
        "linear": FC,
        "norm": 0,
        "activation": HW * 32 + 8 + 32 + HW * 64,  # ReLU 8,192, SE ReLU 8 and sigmoid 32, F.relu 16,384
        "pool": HW * 32 + HW * 64,  # SE's average pool reads 8,192, the head's 16,384
        "elementwise": HW * 32 + HW * 64,  # SE scale x * s: 8,192; residual y + conv(y): 16,384
        "other": 0,  # concat and flatten move data only
    }
    assert r.total("bias_adds") == HW * 32 + 8 + 32 + 10  # grouped conv, SE fc1 and fc2, fc: 8,242
    assert r.unsupported == {}


def test_custom_model_rows_and_parameters():
    t = custom().table
    assert t.loc[t.kind == "conv2d", "name"].tolist() == [
        "stem", "grouped", "dilated", "shared", "depthwise", "se.fc1", "se.fc2", "shared", "(model)"]
    assert t.loc[t.name == "shared", "macs"].tolist() == [SHARED, SHARED]  # one row per call
    assert t.loc[t.name == "shared", "params"].tolist() == [32 * 32, 0]  # the shared weight counted once
    assert t.loc[(t.name == "se") & (t.kind == "mul"), "macs"].item() == HW * 32
    assert t.loc[(t.name == "(model)") & (t.kind == "add"), "macs"].item() == HW * 64
    assert t.loc[(t.name == "(model)") & (t.kind == "concat"), "out_shape"].item() == "1x64x16x16"
    assert t.loc[t.name == "dilated", ["kernel", "out_shape"]].values.tolist() == [["3x3", "1x32x16x16"]]
    assert t.loc[t.name == "depthwise", "groups"].item() == 32
    params = t.groupby("name").params.sum()
    assert {k: int(params[k]) for k in PARAMS} == PARAMS
    assert int(params.sum()) == sum(PARAMS.values()) == sum(p.numel() for p in Custom().parameters())  # 17,442


def test_functional_forms_count_like_modules():
    """F.conv2d, x * y, x + y, torch.cat in a root forward count like nn.Conv2d and the module's own ops."""
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(8, 4, 3, 3))

        def forward(self, x):
            y = F.conv2d(x, self.w, padding=1)
            return torch.cat([y * y, y + y], 1)

    class Modules(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 8, 3, padding=1, bias=False)

        def forward(self, x):
            y = self.conv(x)
            return torch.cat([y * y, y + y], 1)

    x = torch.empty(2, 4, 10, 10, device="meta")
    f, m = (count_module(M().to("meta"), x) for M in (Functional, Modules))
    assert f.by_category() == m.by_category()
    assert f.by_category()["conv"] == (2 * 8 * 10 * 10) * (4 * 3 * 3)  # 1,600 x 36 = 57,600
    assert f.by_category()["elementwise"] == 2 * (2 * 8 * 10 * 10)  # y * y and y + y: 3,200
    assert f.total("params") == m.total("params") == 8 * 4 * 3 * 3


def test_meta_equals_cpu_on_the_custom_model():
    meta, cpu = custom("meta").table, custom("cpu").table
    assert meta.drop(columns="op").equals(cpu.drop(columns="op"))


@pytest.mark.parametrize("name", SUBSET)
def test_meta_equals_cpu(name):
    meta, cpu = traced(name).table, traced(name, "cpu").table
    assert meta.drop(columns="op").equals(cpu.drop(columns="op")), name


def test_aux_heads_are_counted_as_unused_parameters():
    base, aux = traced("googlenet"), count_source(load("googlenet", aux=True))
    unused = aux.table[aux.table.kind == "(unused)"]
    assert set(unused.stage) == {"aux1", "aux2"}
    assert aux.total("params") - int(unused.params.sum()) == base.total("params")
    assert aux.total() == base.total()  # auxiliary heads run only in training


def test_rollup_sums_to_the_total():
    r = traced("resnet50")
    top = rollup(r, 1)
    assert int(top.macs.sum()) == r.total() and "layer3" in set(top.name)
    assert rollup(r, 2).loc[lambda d: d.name == "layer1.0", "rows"].item() > 1


def test_unsupported_ops_are_listed_and_strict_fails():
    class Odd(nn.Module):
        def forward(self, x):
            return torch.special.bessel_j0(x).logcumsumexp(1)  # compute, with no formula (cumsum and sub have one)

    x = torch.empty(1, 3, 4, 4, device="meta")
    r = count_module(Odd(), x, "odd")
    assert r.unsupported == {"aten.special_bessel_j0": 1, "aten.logcumsumexp": 1}
    assert set(r.table.kind) == {"aten.special_bessel_j0", "aten.logcumsumexp"}
    assert any("aten.logcumsumexp" in n for n in r.notes)
    with pytest.raises(CnnCostError, match="aten.logcumsumexp"):
        count_module(Odd(), x, "odd", strict=True)


def test_memory_free_at_any_batch():
    """A batch of 4096 at 600 px would need 17.7 GB of input alone on a real device: meta holds no data."""
    r = count_source(load("resnet18"), batch=4096, size=600)
    assert r.input_shape == (4096, 3, 600, 600)
    assert r.core_macs == 4096 * count_source(load("resnet18"), size=600).core_macs


def test_forward_failing_on_meta_falls_back_to_cpu(tmp_path):
    source = tmp_path / "needs_data.py"
    source.write_text("import torch\nfrom torch import nn\n\nclass Net(nn.Module):\n"
                      "    def __init__(self):\n        super().__init__()\n        self.c = nn.Conv2d(3, 4, 1)\n"
                      "    def forward(self, x):\n        return self.c(x) * float(x.abs().max() >= 0)\n")
    r = count_source(load(f"{source}:Net"), size=8)
    assert r.by_category()["conv"] == (8 * 8 * 4) * 3  # 768
    assert any("meta device" in n for n in r.notes)


@pytest.mark.parametrize("bad, message", [
    ("nosuchnet", "unknown model"), ("resnet5O", "did you mean"),
])
def test_unknown_names(bad, message):
    with pytest.raises(CnnCostError, match=message):
        load(bad)


def test_elements_and_bytes_follow_the_formulas():
    r = custom()
    stem = r.table[r.table.name == "stem"].iloc[0]
    assert stem.activations == 16 * HW and stem.bytes_written == 4 * 16 * HW
    assert stem.bytes_read == 4 * (3 * 32 * 32 + 16 * 27)  # input + weights, fp32
    assert math.prod(map(int, stem.in_shape.split("x"))) == 3 * 32 * 32


def test_count_api_leaves_the_users_module_alone():
    from cnncost.trace import count
    model = Custom()
    r = count(model, size=32)
    assert r.by_category() == custom().by_category()
    assert next(model.parameters()).device.type == "cpu"  # counted on a meta copy
    assert count("resnet18").total("params") == 11_689_512  # torchvision's published num_params
    with pytest.raises(CnnCostError, match="takes a model name or a torch.nn.Module"):
        count(42)
