"""verify's rules for the kinds beyond the lecture: fvcore, ptflops (both backends) and torch, each really run,
are predicted from our rows with no 'unexplained' remainder.

A corpus model holds one of each new kind, as a module and as a function (conv1d/3d, transposed conv, batch norm
3d, group/instance/layer norm, max pool 3d, PReLU, LeakyReLU, ELU, GELU, softmax, bilinear and nearest
upsampling, multi-head attention, scaled dot-product attention, matrix products by name and by the @ operator);
then the report's models beyond the lecture.
"""
from __future__ import annotations

import textwrap
import warnings

import pytest

from cnncost.report.verification import BEYOND
from cnncost.verify import TOOL_NAMES, rule_keys, verify_model

CORPUS = '''
import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


class NewKinds(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1d = nn.Conv1d(3, 8, 3, padding=1)
        self.conv3d = nn.Conv3d(3, 4, 3, padding=1)
        self.bn3d = nn.BatchNorm3d(4)
        self.pool3d = nn.MaxPool3d(2)
        self.deconv = nn.ConvTranspose2d(3, 6, 3, stride=2, padding=1, output_padding=1)
        self.gn = nn.GroupNorm(3, 6)
        self.inorm = nn.InstanceNorm2d(6, affine=True)
        self.prelu = nn.PReLU(6)
        self.lrelu = nn.LeakyReLU(0.1)
        self.elu = nn.ELU()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.ln = nn.LayerNorm(16)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.sdpa = Attention()
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        a = self.conv1d(x.flatten(2))
        v = self.pool3d(self.bn3d(self.conv3d(x.unsqueeze(2).expand(-1, -1, 4, -1, -1))))
        y = self.elu(self.lrelu(self.prelu(self.inorm(self.gn(self.deconv(x))))))
        y = F.interpolate(self.up(y), size=(16, 16), mode="nearest")
        y = F.softmax(y, dim=1) + F.gelu(y) - F.adaptive_avg_pool2d(y, 1)
        t = self.ln(y.mean(1))
        t, _ = self.attn(t, t, t, need_weights=False)
        t = self.sdpa(t.unsqueeze(1), t.unsqueeze(1), t.unsqueeze(1)).squeeze(1)
        t = t.matmul(t.transpose(1, 2)) @ t + torch.bmm(t, t)  # ptflops counts .matmul and bmm, not @
        return self.fc(t.mean(1)) + a.mean() + v.mean()


def make():
    return NewKinds()
'''


def explained(v) -> None:
    """No unexplained difference, and each tool's total is ours plus its named differences."""
    assert not v.errors, v.errors
    assert not v.trace.unsupported
    assert not [c for c in v.causes if c["cause"] == "unexplained"], [c for c in v.causes
                                                                      if c["cause"] == "unexplained"]
    for tool, result in v.tools.items():
        named = sum(c["difference"] for c in v.causes if c["source"] == TOOL_NAMES[tool] and c["difference"])
        assert result.total() == v.trace.total() + named, tool


def test_every_tool_is_explained_on_every_new_kind(tmp_path):
    path = tmp_path / "kinds.py"
    path.write_text(textwrap.dedent(CORPUS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = verify_model(f"{path}:make", size=8)
    explained(v)
    causes = {(c["source"], c["cause"]) for c in v.causes}
    assert {("fvcore", "attention not counted"), ("ptflops", "attention counted by its module hook"),
            ("ptflops", "norm counted as 1 per element"), ("ptflops", "double counting"),
            ("ptflops", "functional linear not counted"),
            ("ptflops (aten)", "bias adds"), ("torch", "MAC vs FLOP")} <= causes


def test_rule_keys_go_from_the_most_specific():
    """A module-specific rule, then the tool's module hook, the op, attention's parts, the kind, its prefixes, the
    category."""
    keys = rule_keys("conv_transpose2d", "conv", True, False, "ConvTranspose2d")
    assert keys[:3] == ("conv_transpose2d@ConvTranspose2d", "conv_transpose2d@hooked", "conv_transpose2*@hooked")
    assert keys.index("conv_transpose*") < keys.index("conv*") < keys.index("*conv")
    keys = rule_keys("softmax", "activation", False, True, "MultiheadAttention", "F.multi_head_attention_forward")
    assert keys[:4] == ("softmax@MultiheadAttention", "softmax:F.multi_head_attention_forward", "*@attention",
                        "softmax") and keys[-1] == "*activation"
    assert "conv*" in rule_keys("conv3d", "conv", False)
    assert "upsample*" in rule_keys("upsample_bilinear", "pool", False)


@pytest.mark.slow
@pytest.mark.parametrize("name", BEYOND)
def test_models_beyond_the_lecture_are_explained(name):
    """The verification report's models beyond the lecture (attention, upsampling, 3-d convolution)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explained(verify_model(name))
