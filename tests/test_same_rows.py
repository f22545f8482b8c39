"""The same rows on every device: a corpus of every op family, traced on meta and on real CPU tensors.

Each corpus module exercises one op family in its usual forms; traced on the meta device and on the CPU with
``cnncost.trace.count`` it must give identical rows, every column equal (the ``op`` column too: a call whose
kernel is the device's choice, such as attention's, is booked as the one torch function called), and no op
without a formula.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from modules import Lambda

T = torch.randn




class BatchNorms(nn.Module):
    """Batch norm on N x C, N x C x L, NCHW and NCDHW inputs."""

    def __init__(self):
        super().__init__()
        self.bn1, self.bn2, self.bn3 = nn.BatchNorm1d(4), nn.BatchNorm2d(4), nn.BatchNorm3d(4, affine=False)

    def forward(self, a, b, c, d):
        return self.bn1(a), self.bn1(b), self.bn2(c), self.bn3(d)


def seq(*layers) -> nn.Module:
    return nn.Sequential(*layers)


class Each(nn.Module):
    """Several ops (functions or modules) applied to the same input, all returned; the modules are submodules
    (and copied with this one to the meta device)."""

    def __init__(self, *calls):
        super().__init__()
        self.layers = nn.ModuleList(c for c in calls if isinstance(c, nn.Module))
        self.calls = list(calls)

    def forward(self, x):
        return tuple(c(x) for c in self.calls)


each = Each



def gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


def elementwise(x, y):
    return (x - y, x / y, -x, x.exp(), x.pow(2), x.abs().sqrt(), x.abs().add(1).rsqrt(), x.clamp(-1, 1),
            x.clamp_min(0), torch.where(x > 0, x, y), x * 2 + 1, x.abs().log1p(), torch.addcmul(x, x, y, value=0.5))


def reductions(x):
    return (x.sum(), x.sum(1), x.mean((2, 3)), x.mean(-1, keepdim=True), x.var(1), torch.var_mean(x, (2, 3)),
            x.amax(1), x.max(dim=2).values, x.std(), x.norm(dim=1))


def products(a, b, c, d):
    return (torch.mm(a, b), torch.bmm(c, c.transpose(1, 2)), torch.addmm(b[0], a, b), torch.baddbmm(c, c, d),
            torch.addbmm(a, c, d), torch.einsum("bij,bkj->bik", c, c), a @ b, torch.matmul(c, b[:5]),
            torch.mv(a, b[:, 0]), torch.dot(b[:, 0], b[:, 1]), F.linear(c, a, b[:4, 0]))


def attention(q, k, v):
    return (F.scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v, is_causal=True),
            F.scaled_dot_product_attention(q, k, v, scale=0.5))


def data_movement(x, i):
    index = i.view(1, 2, 1, 1).expand(2, 2, 4, 4)
    return (F.pad(x, (1, 1, 2, 0)), F.pad(x, (1, 1, 1, 1), mode="reflect"), F.pad(x, (1, 1, 1, 1), mode="replicate"),
            torch.roll(x, 1, 2), x[:, i], x.index_select(1, i), torch.gather(x, 1, index),
            torch.zeros_like(x).scatter(1, index, 1.0), torch.stack([x, x]), x.masked_fill(x > 0, 0.0),
            x.repeat(1, 2, 1, 1), x.flip(3), x.tile((2,)), torch.cat([x, x], 1), x.permute(0, 2, 3, 1).contiguous(),
            torch.triu(x), x.unsqueeze(0).expand(3, -1, -1, -1, -1).clone())


CORPUS = {
    "conv of every rank": lambda: (seq(nn.Conv1d(4, 8, 3, padding=1), nn.Conv1d(8, 8, 3, groups=8, dilation=2)),
                                   (T(2, 4, 16),)),
    "conv2d": lambda: (seq(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.Conv2d(8, 8, (1, 3), groups=4)),
                       (T(1, 3, 17, 17),)),
    "conv3d": lambda: (nn.Conv3d(2, 4, (3, 3, 3), stride=(1, 2, 2), padding=1), (T(1, 2, 6, 8, 8),)),
    "transposed conv": lambda: (seq(nn.ConvTranspose1d(4, 2, 3, stride=2, output_padding=1),), (T(1, 4, 9),)),
    "transposed conv2d": lambda: (nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2,
                                                     dilation=1), (T(2, 4, 7, 7),)),
    "transposed conv3d": lambda: (nn.ConvTranspose3d(2, 2, 2, stride=2), (T(1, 2, 3, 4, 4),)),
    "batch norm 1d/2d/3d": lambda: (BatchNorms().eval(), (T(3, 4), T(3, 4, 6), T(2, 4, 5, 5), T(1, 4, 2, 3, 3))),
    "layer, group, instance norm": lambda: (seq(nn.GroupNorm(2, 4), nn.InstanceNorm2d(4, affine=True),
                                                nn.LayerNorm([5, 5]), nn.GroupNorm(4, 4, affine=False)),
                                            (T(2, 4, 5, 5),)),
    "local response norm": lambda: (nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0), (T(1, 8, 6, 6),)),
    "pooling of every rank": lambda: (each(lambda x: F.max_pool1d(x.flatten(2), 3, 2),
                                           lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True),
                                           lambda x: F.max_pool2d(x, 2, ceil_mode=True),
                                           lambda x: F.max_pool3d(x.unsqueeze(2), (1, 2, 2)),
                                           lambda x: F.avg_pool3d(x.unsqueeze(2), (1, 3, 3), 1),
                                           lambda x: F.adaptive_avg_pool2d(x, (3, 2)),
                                           lambda x: F.adaptive_max_pool2d(x, 2),
                                           lambda x: F.adaptive_avg_pool1d(x.flatten(2), 5),
                                           lambda x: F.adaptive_max_pool1d(x.flatten(2), 4),
                                           lambda x: F.adaptive_avg_pool3d(x.unsqueeze(2), 1)),
                                      (T(2, 3, 9, 9),)),
    "upsample": lambda: (each(lambda x: F.interpolate(x, scale_factor=2, mode="nearest"),
                              lambda x: F.interpolate(x, size=(7, 9), mode="bilinear", align_corners=True),
                              lambda x: F.interpolate(x, scale_factor=1.5, mode="bicubic"),
                              lambda x: F.interpolate(x, scale_factor=2, mode="nearest-exact"),
                              lambda x: F.interpolate(x.flatten(2), size=40, mode="linear"),
                              lambda x: F.interpolate(x.unsqueeze(2), scale_factor=(1, 2, 2), mode="trilinear"),
                              nn.Upsample(scale_factor=2, mode="bilinear")),
                         (T(1, 2, 4, 5),)),
    "activations": lambda: (each(F.relu, F.relu6, F.silu, torch.sigmoid, F.gelu, gelu_tanh, F.hardswish,
                                 F.hardsigmoid, torch.tanh, lambda x: F.softmax(x, -1), lambda x: F.log_softmax(x, 1),
                                 lambda x: F.leaky_relu(x, 0.1), F.elu, F.mish, lambda x: F.hardtanh(x, -2.0, 2.0),
                                 nn.PReLU(3)),
                            (T(2, 3, 4, 4),)),
    "elementwise": lambda: (Lambda(elementwise), (T(2, 3, 4), T(3, 4))),
    "reductions": lambda: (Lambda(reductions), (T(2, 3, 4, 5),)),
    "matrix products": lambda: (Lambda(products), (T(4, 5), T(5, 6), T(3, 4, 5), T(3, 5, 5))),
    "attention": lambda: (Lambda(attention), (T(2, 4, 16, 8), T(2, 4, 16, 8), T(2, 4, 16, 8))),
    "multi-head attention": lambda: (nn.MultiheadAttention(16, 4, batch_first=True).eval(),
                                     (T(2, 10, 16), T(2, 10, 16), T(2, 10, 16))),
    "transformer encoder layer": lambda: (nn.TransformerEncoderLayer(16, 4, 32, batch_first=True, dropout=0.0).eval(),
                                          (T(2, 10, 16),)),
    "data movement": lambda: (Lambda(data_movement), (T(2, 3, 4, 4), torch.tensor([0, 2]))),
}


def rows(module: nn.Module, inputs: tuple, device: str):
    """Our rows for a module on a device (the module copied to meta for device='meta')."""
    from cnncost.trace import count
    result = count(module, inputs=inputs, device=device)
    return result, result.table


@pytest.mark.parametrize("family", CORPUS)
def test_meta_and_cpu_give_the_same_rows(family):
    """Identical rows (every column) on meta and on real CPU tensors; nothing unsupported."""
    module, inputs = CORPUS[family]()
    cpu, cpu_rows = rows(module, inputs, "cpu")
    meta, meta_rows = rows(module, inputs, "meta")
    assert not cpu.unsupported and not meta.unsupported, (cpu.unsupported, meta.unsupported)
    assert len(cpu_rows) > 0
    assert not any("forward failed" in n for n in meta.notes), meta.notes  # counted on meta, not a fallback
    assert meta_rows.to_dict("records") == cpu_rows.to_dict("records")
