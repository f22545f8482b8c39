"""Convolution of every rank (and transposed), normalization, pooling and resampling against PyTorch itself.

Output shapes come from the real ops on the meta device, conv MACs from torch's FlopCounterMode / 2, adaptive
pooling adds from the Jacobian, and norm / upsample counts from fvcore's rules; the rest is derived in front of
the reader.
"""
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import cnncost
from cnncost.errors import CnnCostError
from cnncost.formulas import cost
from cnncost.trace.counter import count_module

EXAMPLES = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
META = torch.device("meta")
MAX_SIZE = {1: 16, 2: 9, 3: 5}  # spatial sizes per rank, small enough for 3-d


def torch_flops(fn, *args, **kwargs):
    """Run fn under torch's FlopCounterMode; return (output, counted FLOPs)."""
    with FlopCounterMode(display=False) as counter:
        out = fn(*args, **kwargs)
    return out, counter.get_total_flops()


def dims(draw, rank: int, low: int, high: int) -> tuple[int, ...]:
    return tuple(draw(st.lists(st.integers(low, high), min_size=rank, max_size=rank)))


# -- convolution of every rank, transposed too ---------------------------------------------------------------


@st.composite
def conv_cases(draw):
    rank, transposed, groups = draw(st.integers(1, 3)), draw(st.booleans()), draw(st.integers(1, 3))
    stride, dilation = dims(draw, rank, 1, 3), dims(draw, rank, 1, 2)
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation)) if transposed \
        else (0,) * rank
    return dict(rank=rank, transposed=transposed, groups=groups, batch=draw(st.integers(1, 2)),
                c_in=groups * draw(st.integers(1, 3)), c_out=groups * draw(st.integers(1, 3)),
                size=dims(draw, rank, 1, MAX_SIZE[rank]), kernel=dims(draw, rank, 1, 4), stride=stride,
                padding=dims(draw, rank, 0, 2), dilation=dilation, output_padding=output_padding,
                bias=draw(st.booleans()))


def conv_fits(c) -> bool:
    """Whether PyTorch accepts the case: the window fits (regular) or the output is not empty (transposed)."""
    for n, k, s, p, d, op in zip(c["size"], c["kernel"], c["stride"], c["padding"], c["dilation"],
                                 c["output_padding"]):
        if c["transposed"] and (n - 1) * s - 2 * p + d * (k - 1) + op + 1 <= 0:
            return False
        if not c["transposed"] and n + 2 * p - d * (k - 1) - 1 < 0:
            return False
    return True


@EXAMPLES
@given(conv_cases())
def test_conv_of_every_rank_and_transposed_matches_torch(c):
    assume(conv_fits(c))
    rank, g = c["rank"], c["groups"]
    x = torch.empty(c["batch"], c["c_in"], *c["size"], device=META)
    # PyTorch's weight layout: (C_out, C_in / g, *k), transposed (C_in, C_out / g, *k)
    w_shape = (c["c_in"], c["c_out"] // g) if c["transposed"] else (c["c_out"], c["c_in"] // g)
    weight = torch.empty(*w_shape, *c["kernel"], device=META)
    bias = torch.empty(c["c_out"], device=META) if c["bias"] else None
    hyper = dict(stride=c["stride"], padding=c["padding"], dilation=c["dilation"], groups=g)
    if c["transposed"]:
        fn = getattr(F, f"conv_transpose{rank}d")
        out, flops = torch_flops(fn, x, weight, bias, output_padding=c["output_padding"], **hyper)
        kind, hyper["output_padding"] = f"conv_transpose{rank}d", c["output_padding"]
    else:
        out, flops = torch_flops(getattr(F, f"conv{rank}d"), x, weight, bias, **hyper)
        kind = f"conv{rank}d"

    ours = cost(kind, x.shape, out_channels=c["c_out"], kernel=c["kernel"], bias=c["bias"], **hyper)
    assert ours.out_shape == tuple(out.shape)
    assert ours.macs == flops // 2
    assert ours.params == weight.numel() + (bias.numel() if c["bias"] else 0)
    assert ours.bias_adds == (out.numel() if c["bias"] else 0)


def test_transposed_conv_scatters_each_input_element():
    # ConvTranspose2d 4 -> 6, 3x3, stride 2, output_padding 1, groups 2 on 5x5: out (5-1)*2 + 2 + 1 + 1 = 12;
    # each of the 4*5*5 input elements meets 6/2 filters of 3*3 taps: 100 * 3 * 9 = 2700.
    c = cost("conv_transpose2d", (1, 4, 5, 5), out_channels=6, kernel=3, stride=2, output_padding=1, groups=2)
    assert c.out_shape == (1, 6, 12, 12) and c.macs == 4 * 5 * 5 * 3 * 9 == 2700
    assert c.params == 4 * 3 * 3 * 3 and c.kernel == "3x3" and c.stride == "2x2"


def test_conv3d_is_the_3d_case():
    # A C3D-style 3x3x3 conv 64 -> 128 on 8x28x28, padding 1: 128*8*28*28 outputs x 64*27 MACs each.
    c = cost("conv3d", (1, 64, 8, 28, 28), out_channels=128, kernel=3, padding=1)
    assert c.out_shape == (1, 128, 8, 28, 28) and c.kernel == "3x3x3"
    assert c.macs == 128 * 8 * 28 * 28 * 64 * 27 == 1_387_266_048


# -- pooling of every rank -----------------------------------------------------------------------------------


@st.composite
def pool_cases(draw):
    rank = draw(st.integers(1, 3))
    kernel = dims(draw, rank, 1, 4)
    return dict(rank=rank, kernel=kernel, stride=dims(draw, rank, 1, 3),
                padding=tuple(draw(st.integers(0, k // 2)) for k in kernel),  # PyTorch: padding <= kernel / 2
                dilation=dims(draw, rank, 1, 2), size=dims(draw, rank, 1, MAX_SIZE[rank] + 3),
                ceil=draw(st.booleans()), batched=draw(st.booleans()), avg=draw(st.booleans()))


@EXAMPLES
@given(pool_cases())
def test_pool_of_every_rank_matches_torch_shape(c):
    rank = c["rank"]
    dilation = (1,) * rank if c["avg"] else c["dilation"]
    assume(all(n + 2 * p - d * (k - 1) - 1 >= 0
               for n, k, p, d in zip(c["size"], c["kernel"], c["padding"], dilation)))
    assume(not (c["avg"] and rank == 3 and any(n < k for n, k in zip(c["size"], c["kernel"]))))  # avg_pool3d's rule
    x = torch.empty(*((2,) if c["batched"] else ()), 3, *c["size"], device=META)
    if c["avg"]:
        out = getattr(F, f"avg_pool{rank}d")(x, c["kernel"], c["stride"], c["padding"], ceil_mode=c["ceil"])
        ours = cost(f"avgpool{rank}d", x.shape, kernel=c["kernel"], stride=c["stride"], padding=c["padding"],
                    ceil_mode=c["ceil"])
    else:
        out = getattr(F, f"max_pool{rank}d")(x, c["kernel"], c["stride"], c["padding"], dilation,
                                             ceil_mode=c["ceil"])
        ours = cost(f"maxpool{rank}d", x.shape, kernel=c["kernel"], stride=c["stride"], padding=c["padding"],
                    dilation=dilation, ceil_mode=c["ceil"])
    assert ours.out_shape == tuple(out.shape)
    assert ours.macs == out.numel() * math.prod(c["kernel"])  # one compare / add per window position


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 3), st.data())
def test_adaptive_pools_of_every_rank_add_once_per_jacobian_nonzero(rank, data):
    size = dims(data.draw, rank, 1, {1: 9, 2: 7, 3: 4}[rank])
    out_size = dims(data.draw, rank, 1, 4)
    # Each addition pairs one input position with one output bin: count the nonzeros of d(out)/d(in).
    x = torch.rand(1, 1, *size, dtype=torch.float64)
    avg = getattr(F, f"adaptive_avg_pool{rank}d")
    jacobian = torch.autograd.functional.jacobian(lambda t: avg(t, out_size), x)
    ours = cost(f"adaptive_avgpool{rank}d", x.shape, output_size=out_size)
    assert ours.out_shape == (1, 1, *out_size) == tuple(avg(x, out_size).shape)
    assert ours.macs == int((jacobian != 0).sum())
    # Max pooling compares over the same bins.
    biggest = cost(f"adaptive_maxpool{rank}d", x.shape, output_size=out_size)
    assert biggest.macs == ours.macs
    assert biggest.out_shape == tuple(getattr(F, f"adaptive_max_pool{rank}d")(x, out_size).shape)


def test_adaptive_pool_output_size_none_keeps_the_input_size():
    # AdaptiveAvgPool2d((None, 1)) on 4x6: bins 1 high (4 of them) and 6 wide: 4 * 6 adds per channel.
    c = cost("adaptive_avgpool2d", (1, 3, 4, 6), output_size=(None, 1))
    assert c.out_shape == (1, 3, 4, 1) and c.macs == 3 * 4 * 6


# -- resampling ----------------------------------------------------------------------------------------------

TAPS = {"nearest": 1, "nearest-exact": 1, "linear": 2, "bilinear": 4, "bicubic": 16, "trilinear": 8}
MODE_RANK = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}


@EXAMPLES
@given(st.sampled_from(list(TAPS)), st.integers(1, 3), st.data())
def test_interpolation_matches_torch_shape(mode, rank, data):
    rank = MODE_RANK.get(mode, rank)
    x = torch.empty(1, 2, *dims(data.draw, rank, 1, 7), device=META)
    if data.draw(st.booleans()):
        resize = {"size": dims(data.draw, rank, 1, 12)}
    else:
        resize = {"scale_factor": data.draw(st.sampled_from([0.5, 1.0, 1.5, 2.0, 2.5, 3.0]))}
        assume(min(x.shape[2:]) * resize["scale_factor"] >= 1)
    align = data.draw(st.booleans()) if mode in MODE_RANK else None
    out = F.interpolate(x, mode=mode, align_corners=align, **resize)
    ours = cost("upsample_" + mode.replace("-", "_"), x.shape, align_corners=align, **resize)
    assert ours.out_shape == tuple(out.shape)
    assert ours.macs == out.numel() * TAPS[mode]  # one multiply-add per input value read


# -- normalization -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("module, shape", [
    (nn.BatchNorm1d(6), (4, 6)), (nn.BatchNorm1d(6), (4, 6, 5)), (nn.BatchNorm2d(6), (2, 6, 3, 3)),
    (nn.BatchNorm3d(6), (2, 6, 2, 3, 3)), (nn.BatchNorm2d(6, affine=False), (2, 6, 3, 3)),
])
def test_batch_norm_of_every_rank_folds_to_one_mac_per_element(module, shape):
    kind = f"batchnorm{ {2: 1, 3: 1, 4: 2, 5: 3}[len(shape)]}d"
    c = cost(kind, shape, affine=module.affine)
    assert c.macs == math.prod(shape)
    assert c.params == sum(p.numel() for p in module.parameters())
    assert c.buffers == module.running_mean.numel() + module.running_var.numel()


@pytest.mark.parametrize("module, kind, hyper, shape", [
    (nn.GroupNorm(2, 8), "group_norm", {"groups": 2}, (2, 8, 5, 5)),
    (nn.GroupNorm(4, 8, affine=False), "group_norm", {"groups": 4, "affine": False}, (2, 8, 5)),
    (nn.LayerNorm([5, 5]), "layer_norm", {"normalized_shape": (5, 5)}, (2, 8, 5, 5)),
    (nn.LayerNorm(12), "layer_norm", {"normalized_shape": 12}, (2, 7, 12)),
    (nn.LayerNorm(12, elementwise_affine=False), "layer_norm", {"normalized_shape": [12], "affine": False},
     (2, 7, 12)),
])
def test_group_and_layer_norm_cost_what_fvcore_counts(module, kind, hyper, shape):
    # fvcore's norm handle: 5 ops per element with affine, 4 without (its flop_count.py, norm_flop_counter).
    fvcore = pytest.importorskip("fvcore.nn")
    x = torch.rand(shape)
    counted = fvcore.FlopCountAnalysis(module, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    ours = cost(kind, shape, **hyper)
    assert ours.macs == counted.total() == math.prod(shape) * (5 if module.weight is not None else 4)
    assert ours.params == sum(p.numel() for p in module.parameters())
    assert ours.out_shape == tuple(module.to(META)(x.to(META)).shape)


def test_layer_norm_without_bias_has_weights_only():
    layer = nn.LayerNorm(16, bias=False)
    assert cost("layer_norm", (3, 16), normalized_shape=16, bias=False).params == 16 == layer.weight.numel()


def test_instance_norm_computes_statistics_unless_it_tracks_them():
    # per (N, C) mean and variance: 4 ops per element, +1 with affine; with running statistics it folds to 1.
    assert cost("instance_norm", (2, 8, 5, 5)).macs == 2 * 8 * 25 * 4
    assert cost("instance_norm", (2, 8, 5, 5), affine=True).macs == 2 * 8 * 25 * 5
    tracked = cost("instance_norm", (2, 8, 5, 5), affine=True, running_stats=True)
    assert tracked.macs == 2 * 8 * 25 and tracked.params == 2 * 8 and tracked.buffers == 2 * 8


def test_local_response_norm_counts_its_window():
    # AlexNet's LRN (size 5) on conv1's 96x55x55: square 1 + window sum 5 + scale and shift 1 + pow 1 + divide 1.
    c = cost("lrn", (1, 96, 55, 55), size=5, alpha=5e-4, beta=0.75, k=2.0)
    assert c.macs == 96 * 55 * 55 * (1 + 5 + 1 + 1 + 1) == 2_613_600
    assert c.out_shape == (1, 96, 55, 55) and c.params == 0 and c.category == "norm"


def test_alexnet_paper_has_local_response_norm_after_conv1_and_conv2():
    table = cnncost.analyze("alexnet_paper").table
    norms = table[table.kind == "lrn"]
    assert list(norms.stage) == ["conv1", "conv2"] and list(norms.out_shape) == ["1x96x55x55", "1x256x27x27"]
    # each LRN follows its conv's ReLU and comes before the max pool
    kinds = list(table.kind)
    assert kinds[:8] == ["conv2d", "relu", "lrn", "maxpool2d", "conv2d", "relu", "lrn", "maxpool2d"]
    assert int(norms.macs.sum()) == (96 * 55 * 55 + 256 * 27 * 27) * 9 == 4_293_216
    assert int(norms.params.sum()) == 0


@pytest.mark.parametrize("kind, shape, hyper, message", [
    ("conv3d", (1, 2, 8, 8), dict(out_channels=4, kernel=3), "expected an NCDHW input"),
    ("conv1d", (1, 2, 8, 8), dict(out_channels=4, kernel=3), "expected an NCL input"),
    ("conv_transpose2d", (1, 2, 8, 8), dict(out_channels=4, kernel=3, stride=2, output_padding=2),
     "output padding 2 must be smaller than the stride 2 or the dilation 1"),
    ("conv_transpose1d", (1, 2, 1), dict(out_channels=4, kernel=1, padding=1), "leaves no output"),
    ("conv2d", (1, 2, 8, 8), dict(out_channels=4, kernel=(3, 3, 3)), "kernel must be one number or 2"),
    ("maxpool3d", (1, 2, 8, 8, 8), dict(kernel=2, padding=2), "at most half the kernel"),
    ("avgpool3d", (1, 2, 1, 1, 1), dict(kernel=(1, 4, 1), padding=(0, 2, 0)), "smaller than the kernel"),
    ("group_norm", (1, 6, 4, 4), dict(groups=4), "groups=4 must divide"),
    ("layer_norm", (1, 6, 4, 4), dict(normalized_shape=(6, 4)), "is not the end of shape"),
    ("batchnorm3d", (1, 6, 4, 4), {}, "batchnorm3d expects 5-d input"),
    ("upsample_bilinear", (1, 2, 4), dict(size=8), "bilinear interpolation does not apply"),
    ("upsample_nearest", (1, 2, 4), {}, "needs an output size or a scale factor"),
    ("adaptive_maxpool2d", (1, 2, 4, 4), dict(output_size=0), "output size must be positive"),
])
def test_bad_hyper_parameters_name_the_problem(kind, shape, hyper, message):
    with pytest.raises(CnnCostError, match=message):
        cost(kind, shape, **hyper)


# -- aten handlers: small modules traced on meta and on the CPU ----------------------------------------------

MODULES = [  # (id, module, input shape, traced kind, MACs derived)
    ("conv1d", lambda: nn.Conv1d(4, 6, 3), (2, 4, 10), "conv1d", 2 * 6 * 8 * 4 * 3),
    ("conv3d", lambda: nn.Conv3d(2, 4, 3, padding=1, bias=False), (1, 2, 4, 5, 5), "conv3d", 4 * 100 * 2 * 27),
    ("conv_transpose1d", lambda: nn.ConvTranspose1d(3, 5, 4, stride=2), (1, 3, 7), "conv_transpose1d",
     3 * 7 * 5 * 4),
    ("conv_transpose2d", lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, output_padding=1, groups=2), (1, 4, 5, 5),
     "conv_transpose2d", 4 * 25 * 3 * 9),
    ("conv_transpose3d", lambda: nn.ConvTranspose3d(2, 2, 2, stride=2), (1, 2, 2, 3, 3), "conv_transpose3d",
     2 * 18 * 2 * 8),
    ("group_norm", lambda: nn.GroupNorm(2, 8), (2, 8, 5, 5), "group_norm", 2 * 8 * 25 * 5),
    ("layer_norm", lambda: nn.LayerNorm([5, 5]), (2, 8, 5, 5), "layer_norm", 2 * 8 * 25 * 5),
    ("layer_norm_plain", lambda: nn.LayerNorm(5, elementwise_affine=False), (2, 3, 5), "layer_norm", 30 * 4),
    ("instance_norm2d", lambda: nn.InstanceNorm2d(8), (2, 8, 5, 5), "instance_norm", 2 * 8 * 25 * 4),
    ("instance_norm_tracked", lambda: nn.InstanceNorm1d(8, affine=True, track_running_stats=True), (2, 8, 5),
     "instance_norm", 2 * 8 * 5),
    ("batch_norm1d", lambda: nn.BatchNorm1d(8), (4, 8), "batchnorm1d", 4 * 8),
    ("batch_norm1d_seq", lambda: nn.BatchNorm1d(8), (4, 8, 6), "batchnorm1d", 4 * 8 * 6),
    ("batch_norm3d", lambda: nn.BatchNorm3d(4), (1, 4, 2, 3, 3), "batchnorm3d", 4 * 18),
    ("local_response_norm", lambda: nn.LocalResponseNorm(5, k=2.0), (1, 8, 5, 5), "lrn", 8 * 25 * (5 + 4)),
    ("local_response_norm_3d", lambda: nn.LocalResponseNorm(3), (1, 8, 3, 5, 5), "lrn", 8 * 75 * (3 + 4)),
    ("max_pool3d", lambda: nn.MaxPool3d(2), (1, 2, 4, 4, 4), "maxpool3d", 2 * 8 * 8),
    ("avg_pool3d", lambda: nn.AvgPool3d(3, stride=2, padding=1), (1, 2, 5, 5, 5), "avgpool3d", 2 * 27 * 27),
    # a 1-d pool is booked as 1-d (it runs as a 2-d op on a view): out (9 - 3) // 2 + 1 = 4 per channel
    ("avg_pool1d", lambda: nn.AvgPool1d(3, stride=2), (1, 2, 9), "avgpool1d", 2 * 4 * 3),
    ("max_pool1d", lambda: nn.MaxPool1d(2, ceil_mode=True), (1, 2, 9), "maxpool1d", 2 * 5 * 2),
    # 7 -> 3 bins [0, 3), [2, 5), [4, 7): 3 + 3 + 3 = 9 positions per dim
    ("adaptive_max_pool2d", lambda: nn.AdaptiveMaxPool2d(3), (1, 2, 7, 7), "adaptive_maxpool2d", 2 * 9 * 9),
    ("adaptive_max_pool3d", lambda: nn.AdaptiveMaxPool3d((1, 3, 3)), (1, 2, 2, 7, 7), "adaptive_maxpool3d",
     2 * 2 * 9 * 9),
    ("adaptive_avg_pool3d_global", lambda: nn.AdaptiveAvgPool3d(1), (1, 2, 3, 4, 4), "adaptive_avgpool3d", 2 * 48),
    ("adaptive_avg_pool3d", lambda: nn.AdaptiveAvgPool3d(2), (1, 2, 3, 4, 4), "adaptive_avgpool3d", 2 * 4 * 4 * 4),
    ("upsample_bilinear", lambda: nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True), (1, 2, 4, 4),
     "upsample_bilinear", 2 * 64 * 4),
    ("upsample_nearest3d", lambda: nn.Upsample(scale_factor=2), (1, 2, 2, 3, 3), "upsample_nearest", 2 * 4 * 36),
    ("upsample_nearest_exact", lambda: nn.Upsample(size=7, mode="nearest-exact"), (1, 2, 3), "upsample_nearest_exact",
     2 * 7),
    ("upsample_linear", lambda: nn.Upsample(size=6, mode="linear"), (1, 2, 3), "upsample_linear", 2 * 6 * 2),
    ("upsample_bicubic", lambda: nn.Upsample(size=(5, 7), mode="bicubic"), (1, 1, 3, 3), "upsample_bicubic", 35 * 16),
    ("upsample_trilinear", lambda: nn.Upsample(scale_factor=2, mode="trilinear"), (1, 1, 2, 2, 2),
     "upsample_trilinear", 64 * 8),
]


def rows(module: nn.Module, shape, device: str):
    x = torch.rand(shape) if device == "cpu" else torch.empty(shape, device=device)
    result = count_module(module.to(device), x)
    table = result.table.drop(columns=["module", "op"], errors="ignore")
    return result, table


@pytest.mark.parametrize("make, shape, kind, macs", [m[1:] for m in MODULES], ids=[m[0] for m in MODULES])
def test_traced_module_is_one_row_of_its_kind_on_every_device(make, shape, kind, macs):
    module = make()
    result, on_meta = rows(module, shape, "meta")
    assert not result.unsupported
    assert list(on_meta.kind) == [kind] and int(on_meta.macs.sum()) == macs
    assert int(on_meta.params.sum()) == sum(p.numel() for p in module.parameters())
    _, on_cpu = rows(make(), shape, "cpu")
    assert on_cpu.to_dict("records") == on_meta.to_dict("records")


@pytest.mark.parametrize("make, shape", [(m[1], m[2]) for m in MODULES if m[0].startswith("conv")],
                         ids=[m[0] for m in MODULES if m[0].startswith("conv")])
def test_traced_convolutions_equal_torch_counter(make, shape):
    module = make().to(META)
    x = torch.empty(shape, device=META)
    _, flops = torch_flops(module, x)
    assert count_module(module, x).core_macs == flops // 2


class GridSample(nn.Module):
    """Bilinear sampling of an 8x8 grid of points."""

    def forward(self, x):
        return F.grid_sample(x, torch.zeros(x.shape[0], 8, 8, 2), align_corners=False)


@pytest.mark.parametrize("module, shape, per_output", [
    (nn.Upsample(scale_factor=2, mode="bilinear"), (1, 2, 4, 4), 4),
    (nn.Upsample(scale_factor=2, mode="nearest"), (1, 2, 4, 4), 1),
    (GridSample(), (1, 2, 5, 5), 4),
])
def test_upsample_counts_what_fvcore_counts(module, shape, per_output):
    # fvcore: upsample_bilinear2d and grid_sampler = output elements x 4, upsample_nearest2d = output elements x 1.
    fvcore = pytest.importorskip("fvcore.nn")
    x = torch.rand(shape)
    counted = fvcore.FlopCountAnalysis(module, x).unsupported_ops_warnings(False).total()
    assert count_module(module, x).table.macs.sum() == counted == 2 * 8 * 8 * per_output


class Call(nn.Module):
    """A module whose forward makes one direct aten call (overloads no nn.Module reaches on this backend)."""

    def __init__(self, call):
        super().__init__()
        self.call = call

    def forward(self, x):
        return self.call(x)


aten = torch.ops.aten
W = torch.empty(2, device=META)  # per-channel weight / bias / statistics of a 2-channel input
X3, X5 = torch.empty(1, 2, 4, device=META), torch.empty(1, 2, 2, 4, 4, device=META)
GRID, GRID3 = torch.empty(1, 3, 5, 2, device=META), torch.empty(1, 2, 3, 5, 3, device=META)
ATEN_CALLS = [  # (id, call on a 1x2x4x4 x, kind, MACs derived)
    ("upsample_bilinear2d.vec", lambda x: aten.upsample_bilinear2d.vec(x, None, True, [2.0, 2.0]),
     "upsample_bilinear", 2 * 8 * 8 * 4),
    ("upsample_nearest2d.vec", lambda x: aten.upsample_nearest2d.vec(x, [8, 8], None), "upsample_nearest", 2 * 64),
    ("upsample_nearest3d.vec", lambda x: aten.upsample_nearest3d.vec(X5, None, [2.0, 2.0, 2.0]),
     "upsample_nearest", 2 * 4 * 8 * 8),
    ("upsample_linear1d.vec", lambda x: aten.upsample_linear1d.vec(X3, [8], False, None), "upsample_linear", 2 * 8 * 2),
    ("upsample_trilinear3d.vec", lambda x: aten.upsample_trilinear3d.vec(X5, [4, 8, 8], False, None),
     "upsample_trilinear", 2 * 256 * 8),
    ("upsample_bicubic2d.vec", lambda x: aten.upsample_bicubic2d.vec(x, [8, 8], False, None), "upsample_bicubic",
     2 * 64 * 16),
    # batch norm: 1 MAC per element folded with running statistics, 4 + 1 affine computing the batch's
    ("_native_batch_norm_legit.no_stats", lambda x: aten._native_batch_norm_legit.no_stats(x, W, W, True, 0.1, 1e-5),
     "batchnorm2d", 32 * 5),
    ("_native_batch_norm_legit_no_training",
     lambda x: aten._native_batch_norm_legit_no_training(x, W, W, W, W, 0.1, 1e-5), "batchnorm2d", 32),
    ("_batch_norm_with_update", lambda x: aten._batch_norm_with_update(x, W, W, W.clone(), W.clone(), 0.1, 1e-5),
     "batchnorm2d", 32 * 5),
    ("_batch_norm_no_update", lambda x: aten._batch_norm_no_update(x, W, W, W, W, 0.1, 1e-5), "batchnorm2d", 32),
    ("native_group_norm", lambda x: aten.native_group_norm(x, W, W, 1, 2, 16, 2, 1e-5), "group_norm", 32 * 5),
    ("max_pool3d_with_indices", lambda x: aten.max_pool3d_with_indices(X5, [2, 2, 2]), "maxpool3d", 2 * 4 * 8),
    ("adaptive_avg_pool1d", lambda x: aten.adaptive_avg_pool1d(X3, [2]), "adaptive_avgpool2d", 2 * 4),
    ("_adaptive_avg_pool3d", lambda x: aten._adaptive_avg_pool3d(X5, [1, 2, 2]), "adaptive_avgpool3d", 2 * 32),
    ("mean over D, H, W", lambda x: aten.mean.dim(X5, [2, 3, 4]), "adaptive_avgpool3d", 2 * 32),
    # grid sampling: a 3x5 grid of output points, each reading 4 (bilinear), 1 (nearest) or 16 (bicubic) inputs
    ("grid_sampler_2d", lambda x: F.grid_sample(x, GRID, align_corners=False), "grid_sample", 2 * 15 * 4),
    ("grid_sampler_2d nearest", lambda x: F.grid_sample(x, GRID, "nearest", align_corners=False), "grid_sample",
     2 * 15),
    ("grid_sampler_2d bicubic", lambda x: F.grid_sample(x, GRID, "bicubic", align_corners=False), "grid_sample",
     2 * 15 * 16),
    ("grid_sampler_3d", lambda x: F.grid_sample(X5, GRID3, align_corners=False), "grid_sample", 2 * 30 * 8),
]


@pytest.mark.parametrize("call, kind, macs", [c[1:] for c in ATEN_CALLS], ids=[c[0] for c in ATEN_CALLS])
def test_aten_overloads_have_handlers(call, kind, macs):
    result = count_module(Call(call), torch.empty(1, 2, 4, 4, device=META))
    assert not result.unsupported
    assert list(result.table.kind) == [kind] and int(result.table.macs.sum()) == macs


class RoIAlign(nn.Module):
    """torchvision's roi_align of two boxes, (x1, y1, x2, y2) = (0, 0, 15, 15) and (2, 3, 4.5, 9), at scale 1/2."""

    def __init__(self, sampling_ratio: int):
        super().__init__()
        self.sampling_ratio = sampling_ratio

    def forward(self, x):
        rois = torch.tensor([[0, 0.0, 0.0, 15.0, 15.0], [0, 2.0, 3.0, 4.5, 9.0]], device=x.device)
        return torchvision.ops.roi_align(x, rois, (7, 7), 0.5, self.sampling_ratio)


@pytest.mark.parametrize("sampling_ratio, device, points", [
    (2, "meta", 2 * 2 * 2),  # two boxes, 2 x 2 points per bin: needs no coordinates
    (2, "cpu", 2 * 2 * 2),
    # adaptive: ceil(box size x 1/2 / 7) points per bin and dim: 7.5 -> 2 x 2; 3 x 1.25 -> 1 x 1
    (-1, "cpu", 2 * 2 + 1 * 1),
])
def test_roi_align_reads_four_taps_per_sampling_point(sampling_ratio, device, points):
    x = torch.rand(1, 4, 16, 16) if device == "cpu" else torch.empty(1, 4, 16, 16, device=META)
    result = count_module(RoIAlign(sampling_ratio), x)
    assert not result.unsupported and list(result.table.kind) == ["roi_align"]
    assert list(result.table.out_shape) == ["2x4x7x7"]
    assert int(result.table.macs.sum()) == 4 * 7 * 7 * 4 * points  # channels x bins x taps x points
