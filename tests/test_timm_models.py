"""timm models by name, traced both ways: conv + linear MACs equal torch's counter on meta, parameters the module's.

Each model is counted by cnncost through its name (``timm:NAME``, the input from its ``pretrained_cfg``) and,
independently, by ``torch.utils.flop_counter.FlopCounterMode`` on the same module and input on the meta device
(FLOPs = 2 x MACs). The parameters are the module's own, each tensor once. Every model passes ``--strict``: no op
without a formula. Skipped when timm is not installed (``pip install 'cnncost[timm]'``).
"""
from __future__ import annotations

import pytest
import torch

timm = pytest.importorskip("timm")

MODELS = ["resnet50", "convnext_tiny", "efficientnet_b0", "tf_efficientnet_b0", "vit_tiny_patch16_224",
          "deit_tiny_patch16_224", "swin_tiny_patch4_window7_224", "mobilenetv3_large_100", "regnety_016",
          "levit_128s", "coatnet_0_rw_224", "resnest14d", "mixer_b16_224"]


def torch_core_macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    """torch's FlopCounterMode on the module (FLOPs of convolutions, matrix products, attention), halved."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as mode, torch.no_grad():
        model(x)
    return mode.get_total_flops() // 2


@pytest.mark.parametrize("name", MODELS)
def test_timm_model_matches_torch_counter_and_its_parameters(name):
    from cnncost.trace.counter import count_source
    from cnncost.trace.models import load
    source = load(f"timm:{name}")
    ours = count_source(source, strict=True)  # --strict: an op without a formula is an error
    model = source.build("meta").eval()
    x = source.input(1, None, "meta")
    assert ours.core_macs == torch_core_macs(model, x)
    unique = {id(p): p.numel() for p in model.parameters()}
    assert ours.total("params") == sum(unique.values())
