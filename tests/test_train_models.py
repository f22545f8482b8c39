"""The training step beyond the lecture: every backward op of the models and modules beyond CNNs is costed
(none "unsupported"), conv + matmul FLOPs equal torch's FlopCounterMode on the same step, models whose loss is
not a classifier's are refused in one line. All on the meta device, batch 2, small inputs where allowed."""
import importlib.util
import json
from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnncost import compat
from cnncost.cli import run
from cnncost.errors import CnnCostError
from cnncost.formulas import cost
from cnncost.trace.models import load
from cnncost.trace.ops import layer_of
from cnncost.trace.step import make_optimizer, training_step
from cnncost.trace.step import prime, targets_for
from cnncost.trace.train import LOSS, trace_training, train_source

HAS_TIMM = importlib.util.find_spec("timm") is not None
TIMM = pytest.mark.skipif(not HAS_TIMM, reason="timm is not installed")

# (model, input size or None for its own); sizes are small where the model allows any size.
MODELS = [("vit_b_16", None), ("swin_t", 64), ("convnext_tiny", 64), ("mobilenet_v3_large", 64),
          ("regnet_y_400mf", 64), ("efficientnet_v2_s", 64), ("maxvit_t", None), ("r3d_18", 32),
          ("mvit_v1_b", None), ("fcn_resnet50", 64), ("deeplabv3_mobilenet_v3_large", 64),
          ("lraspp_mobilenet_v3_large", 64), ("timm:convnext_tiny", 64), ("timm:vit_tiny_patch16_224", None),
          ("timm:tf_efficientnet_b0", 64), ("timm:levit_128s", None), ("timm:mixer_b16_224", None)]
INPUT_GRAD = {"r3d_18", "swin_t", "fcn_resnet50", "lraspp_mobilenet_v3_large"}  # also with an input gradient
CASES = [pytest.param(name, size, grad, id=f"{name}-{'input-grad' if grad else 'image'}",
                      marks=[TIMM] if name.startswith("timm:") else [])
         for grad in (False, True) for name, size in MODELS if not grad or name in INPUT_GRAD]


def torch_flops(model, x, input_grad: bool) -> int:
    """torch's FlopCounterMode over the same training step (conv and matrix products, 2 FLOPs per MAC)."""
    optimizer = make_optimizer(model)
    prime(optimizer)
    with FlopCounterMode(display=False) as counter:
        training_step(model, (x.detach().requires_grad_(input_grad),), targets_for(x.shape[0]), optimizer)
    return counter.get_total_flops()


def torchs_prediction(result, model) -> int:
    """Our conv + linear MACs of forward, grad-input and grad-weight, a grouped conv's dW counted as torch 2.14's
    conv_backward_flop counts it (as if ungrouped, groups x too many; fixed upstream in pytorch/pytorch#183405)."""
    groups = {name: getattr(m, "groups", 1) for name, m in model.named_modules()}
    core = result.table[result.table.category.isin(["conv", "linear"])]
    torch_dw = sum(int(dw) * groups.get(name, 1) for name, dw in zip(core.name, core.grad_weight_macs))
    return result.core("forward_macs") + result.core("grad_input_macs") + torch_dw


@pytest.mark.parametrize("name,size,input_grad", CASES)
def test_core_flops_equal_torchs_counter_on_the_same_step(name, size, input_grad):
    source = load(name)
    model = source.build("meta")
    x = source.input(2, size, "meta")
    result = trace_training(model, x, targets_for(2), input_grad=input_grad)
    assert not result.unsupported  # every op of forward, loss, backward and SGD has a formula (or is free)
    assert 2 * torchs_prediction(result, model) == torch_flops(model, x, input_grad)
    layers = result.table[result.table.module.str.contains("Conv|Linear") & result.table.category.isin(["conv",
                                                                                                        "linear"])]
    assert (layers.grad_weight_macs > 0).all()  # every conv and linear weight gets its dW (torch's count: exact)


class Scale(nn.Module):
    """One parameter after the module under test, so the optimizer has something to update."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x * self.weight


class Fn(nn.Module):
    """A function as a module."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = nn.MultiheadAttention(16, 4, batch_first=True)

    def forward(self, x):
        return self.attention(x, x, x)[0]


def index(n):
    return torch.zeros(n, dtype=torch.long, device="meta")


MODULES = {  # name: (module factory, input shape)
    "conv1d": (lambda: nn.Conv1d(4, 6, 3, stride=2, groups=2), (2, 4, 16)),
    "conv3d": (lambda: nn.Conv3d(3, 4, 3, padding=1), (2, 3, 6, 6, 6)),
    "conv_transpose1d": (lambda: nn.ConvTranspose1d(4, 6, 3, stride=2, output_padding=1, groups=2), (2, 4, 8)),
    "conv_transpose2d": (lambda: nn.ConvTranspose2d(4, 4, 3, stride=2, dilation=2, groups=2), (2, 4, 8, 8)),
    "conv_transpose3d": (lambda: nn.ConvTranspose3d(3, 4, 2, stride=2), (2, 3, 4, 4, 4)),
    "group_norm": (lambda: nn.GroupNorm(2, 4), (2, 4, 5, 5)),
    "layer_norm": (lambda: nn.LayerNorm(8), (2, 3, 8)),
    "instance_norm": (lambda: nn.InstanceNorm2d(4, affine=True), (2, 4, 5, 5)),
    "local_response_norm": (lambda: nn.LocalResponseNorm(3), (2, 4, 5, 5)),
    "batch_norm3d": (lambda: nn.BatchNorm3d(3), (2, 3, 2, 2, 2)),
    **{f"upsample_{mode}": (lambda mode=mode: nn.Upsample(scale_factor=2, mode=mode), shape) for mode, shape in [
        ("nearest", (2, 3, 4, 4)), ("nearest-exact", (2, 3, 4, 4)), ("linear", (2, 3, 4)),
        ("bilinear", (2, 3, 4, 4)), ("bicubic", (2, 3, 4, 4)), ("trilinear", (2, 3, 2, 4, 4))]},
    "adaptive_max_pool1d": (lambda: nn.AdaptiveMaxPool1d(3), (2, 3, 8)),
    "adaptive_max_pool2d": (lambda: nn.AdaptiveMaxPool2d(3), (2, 3, 8, 8)),
    "adaptive_max_pool3d": (lambda: nn.AdaptiveMaxPool3d(2), (2, 3, 4, 4, 4)),
    "max_pool3d": (lambda: nn.MaxPool3d(2), (2, 3, 4, 4, 4)),
    "avg_pool1d": (lambda: nn.AvgPool1d(2), (2, 3, 8)),
    "multi_head_attention": (SelfAttention, (2, 5, 16)),
    "sdpa_causal": (lambda: Fn(lambda x: F.scaled_dot_product_attention(x, x, x, is_causal=True)), (2, 2, 5, 8)),
    **{name: (make, (2, 8)) for name, make in {
        "softmax": lambda: nn.Softmax(-1), "gelu_tanh": lambda: nn.GELU("tanh"), "mish": nn.Mish, "elu": nn.ELU,
        "leaky_relu": nn.LeakyReLU, "hardtanh": lambda: nn.Hardtanh(-2, 3), "softplus": nn.Softplus,
        "hardshrink": nn.Hardshrink, "softshrink": nn.Softshrink, "log_sigmoid": nn.LogSigmoid}.items()},
    "prelu": (lambda: nn.PReLU(4), (2, 4, 3, 3)),
    **{f"pad_{mode}": (lambda mode=mode: Fn(lambda x: F.pad(x, (1, 1, 1, 1), mode=mode)), (2, 3, 4, 4))
       for mode in ("constant", "reflect", "replicate", "circular")},
    "pad_reflect3d": (lambda: Fn(lambda x: F.pad(x, (1,) * 6, mode="reflect")), (2, 3, 4, 4, 4)),
    "index": (lambda: Fn(lambda x: x[:, index(2)]), (2, 3, 4)),
    "gather": (lambda: Fn(lambda x: x.gather(1, index(16).view(2, 2, 4))), (2, 3, 4)),
    "scatter": (lambda: Fn(lambda x: torch.zeros(2, 5, 4, device=x.device).scatter(1, index(24).view(2, 3, 4), x)),
                (2, 3, 4)),
    "roll_flip_repeat": (lambda: Fn(lambda x: x.roll(1, 2).flip(2).repeat(1, 2, 1)), (2, 3, 4)),
    "reductions": (lambda: Fn(lambda x: x.sum(-1) + x.mean(-1) + x.amax(-1) + x.var(-1) + x.prod(-1)), (2, 3, 4)),
    "elementwise": (lambda: Fn(lambda x: (x.exp() - x.abs().sqrt() / x.rsqrt()).pow(2).clamp(0, 1)), (2, 3, 4)),
    "matmul": (lambda: Fn(lambda x: torch.baddbmm(x[:, :, :3], x, x.transpose(1, 2)) @ x), (2, 3, 4)),
    "grid_sample": (lambda: Fn(lambda x: F.grid_sample(x, torch.zeros(2, 3, 3, 2, device=x.device),
                                                       align_corners=False)), (2, 3, 4, 4)),
}


def module_step(make, shape, input_grad=True):
    """A module (then flatten and one scale parameter) traced through a training step on meta."""
    with torch.device("meta"):
        model = nn.Sequential(make(), nn.Flatten(), Scale())
    x = torch.empty(shape, device="meta")
    result = trace_training(model, x, targets_for(shape[0]), input_grad=input_grad)
    return model, x, result


@pytest.mark.parametrize("name", MODULES)
def test_every_backward_op_of_the_new_modules_has_a_formula_and_torchs_count(name):
    model, x, result = module_step(*MODULES[name])
    assert not result.unsupported
    assert 2 * torchs_prediction(result, model) == torch_flops(model, x, True)


def rows(result):
    return {r["name"]: r for r in result.table.to_dict("records")}


def test_upsample_backward_adds_each_output_gradient_to_its_taps():
    _, _, result = module_step(lambda: nn.Upsample(scale_factor=2, mode="bilinear"), (2, 3, 4, 4))
    up = rows(result)["0"]
    taps = 2 * 3 * 8 * 8 * 4  # 384 outputs x 2 x 2 taps = 1,536
    assert (up["forward_macs"], up["grad_input_macs"]) == (taps, taps)


def test_embedding_backward_adds_each_index_row_into_the_weight_gradient():
    with torch.device("meta"):
        model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), Scale())
    result = trace_training(model, torch.zeros(2, 3, dtype=torch.long, device="meta"), targets_for(2))
    assert not result.unsupported
    assert rows(result)["0"]["grad_weight_macs"] == 2 * 3 * 4  # 6 indices x 4 wide: 24 adds


def test_prelu_backward_gives_its_slopes_a_gradient():
    _, _, result = module_step(lambda: nn.PReLU(4), (2, 4, 3, 3))
    ops = result.table[result.table["name"] == "0"].set_index("kind")
    n = 2 * 4 * 3 * 3  # 72 elements
    # dX = dY (x > 0 ? 1 : a): 1 per element; dA: dY x per element (1), on the prelu row; then summed to the
    # 4 slopes (1 per element), a sum op of its own row
    assert (ops.at["prelu", "grad_input_macs"], ops.at["prelu", "grad_weight_macs"]) == (n, n)
    assert (ops.at["sum", "grad_input_macs"], ops.at["sum", "grad_weight_macs"]) == (0, n)
    assert ops["grad_bias_adds"].sum() == 0


def test_a_pads_backward_moves_data_and_computes_nothing():
    _, _, result = module_step(MODULES["pad_reflect"][0], (2, 3, 4, 4))
    pad = rows(result)["0"]
    assert pad["kind"] == "data_movement" and pad["forward_macs"] == pad["grad_input_macs"] == 0


B, H, L, S, E = 2, 3, 5, 7, 8
ATTENTION_BACKWARD_MACS = B * H * L * S * (3 * E + 2 * E)  # S = Q K^T again, dP, dV, dQ, dK: 5 products = 8,400


def fused_backward_calls():
    """The fused attention backward kernels called on meta: q (B, H, L, E), k and v (B, H, S, E)."""
    aten, meta = torch.ops.aten, {"device": "meta"}
    q, k, v = torch.empty(B, H, L, E, **meta), torch.empty(B, H, S, E, **meta), torch.empty(B, H, S, E, **meta)
    out, grad, lse = torch.empty(B, H, L, E, **meta), torch.empty(B, H, L, E, **meta), torch.empty(B, H, L, **meta)
    seed, bias = torch.empty((), dtype=torch.long, **meta), torch.empty(B, H, L, S, **meta)

    def t(x):  # the kernels under the fused ops take (B, L, H, E)
        return x.transpose(1, 2)
    return {
        "flash_for_cpu": (aten._scaled_dot_product_flash_attention_for_cpu_backward.default,
                          (grad, q, k, v, out, lse, 0.0, False)),
        "flash": (aten._scaled_dot_product_flash_attention_backward.default,
                  (grad, q, k, v, out, lse, None, None, L, S, 0.0, False, seed, seed)),
        "efficient": (aten._scaled_dot_product_efficient_attention_backward.default,
                      (grad, q, k, v, bias, out, lse, seed, seed, 0.0, [True] * 4)),
        "cudnn": (aten._scaled_dot_product_cudnn_attention_backward.default,
                  (grad, q, k, v, out, lse, seed, seed, bias, None, None, L, S, 0.0, False)),
        "_flash": (aten._flash_attention_backward.default,
                   (t(grad), t(q), t(k), t(v), t(out), lse, None, None, L, S, 0.0, False, seed, seed)),
        "_efficient": (aten._efficient_attention_backward.default,
                       (t(grad), t(q), t(k), t(v), None, t(out), None, None, L, S, lse, 0.0, seed, seed, 0, False)),
    }


# torch counts these kernels' products too (not the CPU one; and it reads _efficient_attention_backward's
# (B, L, H, E) layout as (B, H, L, E): its counter fails on these shapes; so it does _flash_attention_backward's
# before torch 2.14, pytorch/pytorch#184348)
TORCH_COUNTS = {"flash", "efficient", "cudnn"} | ({"_flash"} if compat.counter_reads_flash_layout() else set())
# the schema each call above is written for: cudnn's backward took no attn_bias before torch 2.5 (and, like its
# forward, had no meta kernel on torch 2.4)
BACKWARD_OPS = {"flash_for_cpu": "_scaled_dot_product_flash_attention_for_cpu_backward",
                "flash": "_scaled_dot_product_flash_attention_backward",
                "efficient": "_scaled_dot_product_efficient_attention_backward",
                "cudnn": "_scaled_dot_product_cudnn_attention_backward",
                "_flash": "_flash_attention_backward", "_efficient": "_efficient_attention_backward"}


@pytest.mark.parametrize("kernel", [
    pytest.param(k, marks=pytest.mark.skipif(not compat.runs_on_meta(op), reason=f"torch {torch.__version__} has no "
                                             f"meta kernel for aten.{op}")) for k, op in BACKWARD_OPS.items()])
def test_fused_attention_backward_costs_its_five_products_on_every_kernel(kernel):
    op, args = fused_backward_calls()[kernel]
    with FlopCounterMode(display=False) if kernel in TORCH_COUNTS else nullcontext() as counter:
        out = op(*args)
    kind, in_shape, hyper = layer_of(op, args, None, out)
    c = cost(kind, in_shape, **hyper)
    products = sum(p.macs for _, p in c.parts if p.category == "linear")
    assert products == ATTENTION_BACKWARD_MACS
    assert c.macs - products == 4 * B * H * L * S  # P recomputed (scale, exp) and dS = P (dP - D): 4 per score
    if kernel in TORCH_COUNTS:
        assert 2 * products == counter.get_total_flops()


def test_segmentation_trains_on_a_per_pixel_cross_entropy():
    pixels = 2 * 8 * 8  # batch 2 at 8 x 8
    assert cost("nll_loss2d", (2, 5, 8, 8)).macs == pixels  # 1 add per pixel, whatever the 5 classes
    assert cost("nll_loss2d_backward", (2, 5, 8, 8)).macs == pixels
    result = train_source(load("lraspp_mobilenet_v3_large"), batch=2, size=64)
    assert not result.unsupported and rows(result)[LOSS]["forward_macs"] > 0


def test_cli_train_a_segmentation_model(capsys):
    status = run(["train", "lraspp_mobilenet_v3_large", "--batch", "2", "--size", "64", "-f", "json"])
    data = json.loads(capsys.readouterr().out)
    assert status == 0 and data["totals"]["core_train_macs"] > data["totals"]["core_forward_macs"]


@pytest.mark.parametrize("name,why", [("raft_small", "optical flow"), ("fasterrcnn_resnet50_fpn", "detection")])
def test_models_that_train_on_other_targets_are_refused_in_one_line(name, why, capsys):
    with pytest.raises(CnnCostError, match=f"cannot trace a training step: {why}"):
        train_source(load(name))
    assert run(["train", name]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnncost: error:") and err.count("\n") == 1 and why in err


def test_a_batch_norm_over_one_value_asks_for_a_larger_batch():
    with pytest.raises(CnnCostError, match="use --batch 2 or more"):
        train_source(load("deeplabv3_mobilenet_v3_large"), batch=1, size=64)


def test_auxiliary_classifiers_train_with_torchvisions_loss_weights():
    source = load("googlenet", aux=True)  # loss = logits + 0.3 (aux1 + aux2), as torchvision's reference
    model = source.build("meta")
    x = source.input(2, 64, "meta")
    result = trace_training(model, x, targets_for(2))
    aux = result.table[result.table.name.str.startswith("aux") & result.table.category.isin(["conv", "linear"])]
    assert len(aux) == 6 and (aux.grad_weight_macs == aux.forward_macs).all()  # 2 heads x (conv, fc1, fc2)
    assert 2 * torchs_prediction(result, model) == torch_flops(model, x, False)
