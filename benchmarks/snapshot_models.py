"""User model files for benchmarks/same_outputs.py: a plain factory, a factory with example inputs, a dict input."""
import torch
from torch import nn


class UNetish(nn.Module):
    """A two-level U-Net: pool, conv, upsample, skip concat."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.down = nn.MaxPool2d(2)
        self.mid = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU())
        self.up = nn.Upsample(scale_factor=2, mode="bilinear")
        self.dec = nn.Conv2d(3 * width, 4, 1)

    def forward(self, x):
        e = self.enc(x)
        m = self.up(self.mid(self.down(e)))
        return self.dec(torch.cat([e, m], 1))


class TinyViT(nn.Module):
    """Patch embedding, two transformer blocks, a head."""

    def __init__(self, dim: int = 32, classes: int = 10):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 8, stride=8)
        layer = nn.TransformerEncoderLayer(dim, 4, 2 * dim, batch_first=True, dropout=0.0)
        self.blocks = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        return self.head(self.blocks(t).mean(1))


class DictNet(nn.Module):
    """A forward that takes a dict of inputs."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 8)
        self.b = nn.Conv1d(2, 4, 3)

    def forward(self, batch: dict):
        return self.a(batch["x"]).sum() + self.b(batch["s"]).sum()


def unet(width: int = 8):
    return UNetish(width)


def vit(dim: int = 32):
    return TinyViT(dim)


def unet_with_example():
    return UNetish(), torch.randn(2, 3, 32, 32)


def dict_net():
    return DictNet(), {"batch": {"x": torch.randn(2, 16), "s": torch.randn(2, 2, 20)}}
