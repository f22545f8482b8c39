"""Formulas against PyTorch itself: output shapes from real ops, MACs from torch's flop counter / 2."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from cnncost.errors import CnnCostError
from cnncost.formulas import FORMULAS, cost, formula, window_out

EXAMPLES = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
META = torch.device("meta")


def torch_flops(fn, *args, **kwargs):
    """Run fn under torch's FlopCounterMode; return (output, counted FLOPs)."""
    with FlopCounterMode(display=False) as counter:
        out = fn(*args, **kwargs)
    return out, counter.get_total_flops()


def fits(size, kernel, stride, padding, dilation):
    """Whether a window fits the padded input (PyTorch raises otherwise)."""
    return size + 2 * padding - dilation * (kernel - 1) - 1 >= 0


conv_configs = st.fixed_dictionaries({
    "batch": st.integers(1, 3), "groups": st.integers(1, 4), "c_in_per_group": st.integers(1, 5),
    "c_out_per_group": st.integers(1, 5), "kh": st.integers(1, 5), "kw": st.integers(1, 5),
    "sh": st.integers(1, 3), "sw": st.integers(1, 3), "ph": st.integers(0, 3), "pw": st.integers(0, 3),
    "dh": st.integers(1, 3), "dw": st.integers(1, 3), "h": st.integers(1, 24), "w": st.integers(1, 24),
    "bias": st.booleans(),
})


@EXAMPLES
@given(conv_configs)
def test_conv2d_matches_torch(c):
    assume(fits(c["h"], c["kh"], c["sh"], c["ph"], c["dh"]) and fits(c["w"], c["kw"], c["sw"], c["pw"], c["dw"]))
    c_in, c_out = c["groups"] * c["c_in_per_group"], c["groups"] * c["c_out_per_group"]
    x = torch.empty(c["batch"], c_in, c["h"], c["w"], device=META)
    weight = torch.empty(c_out, c["c_in_per_group"], c["kh"], c["kw"], device=META)
    bias = torch.empty(c_out, device=META) if c["bias"] else None
    hyper = dict(stride=(c["sh"], c["sw"]), padding=(c["ph"], c["pw"]), dilation=(c["dh"], c["dw"]),
                 groups=c["groups"])
    out, flops = torch_flops(F.conv2d, x, weight, bias, **hyper)

    ours = cost("conv2d", x.shape, out_channels=c_out, kernel=(c["kh"], c["kw"]), bias=c["bias"], **hyper)
    assert ours.out_shape == tuple(out.shape)
    assert ours.macs == flops // 2
    assert ours.params == weight.numel() + (bias.numel() if c["bias"] else 0)
    assert ours.bias_adds == (out.numel() if c["bias"] else 0)


@EXAMPLES
@given(st.lists(st.integers(1, 6), min_size=1, max_size=3), st.integers(1, 64), st.integers(1, 64), st.booleans())
def test_linear_matches_torch(lead, in_features, out_features, bias):
    x = torch.empty(*lead, in_features, device=META)
    layer = torch.nn.Linear(in_features, out_features, bias=bias, device=META)
    out, flops = torch_flops(layer, x)

    ours = cost("linear", x.shape, out_features=out_features, bias=bias)
    assert ours.out_shape == tuple(out.shape)
    assert ours.macs == flops // 2
    assert ours.params == sum(p.numel() for p in layer.parameters())


pool_configs = st.fixed_dictionaries({
    "k": st.integers(1, 4), "s": st.integers(1, 3), "p": st.integers(0, 2), "d": st.integers(1, 2),
    "h": st.integers(1, 20), "w": st.integers(1, 20), "ceil": st.booleans(),
})


@EXAMPLES
@given(pool_configs)
def test_maxpool_shape_matches_torch(c):
    assume(c["p"] <= c["k"] // 2)  # PyTorch's own rule for pool padding
    assume(fits(c["h"], c["k"], c["s"], c["p"], c["d"]) and fits(c["w"], c["k"], c["s"], c["p"], c["d"]))
    x = torch.empty(2, 3, c["h"], c["w"], device=META)
    out = F.max_pool2d(x, c["k"], c["s"], c["p"], c["d"], ceil_mode=c["ceil"])
    ours = cost("maxpool2d", x.shape, kernel=c["k"], stride=c["s"], padding=c["p"], dilation=c["d"],
                ceil_mode=c["ceil"])
    assert ours.out_shape == tuple(out.shape)
    assert ours.macs == out.numel() * c["k"] * c["k"]  # one comparison per window position


@EXAMPLES
@given(pool_configs)
def test_avgpool_shape_matches_torch(c):
    assume(c["p"] <= c["k"] // 2 and fits(c["h"], c["k"], c["s"], c["p"], 1) and fits(c["w"], c["k"], c["s"], c["p"], 1))
    x = torch.empty(1, 2, c["h"], c["w"], device=META)
    out = F.avg_pool2d(x, c["k"], c["s"], c["p"], ceil_mode=c["ceil"])
    ours = cost("avgpool2d", x.shape, kernel=c["k"], stride=c["s"], padding=c["p"], ceil_mode=c["ceil"])
    assert ours.out_shape == tuple(out.shape)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 5), st.integers(1, 5))
def test_adaptive_avgpool_adds_equal_jacobian_nonzeros(h, w, oh, ow):
    # Each addition pairs one input position with one output bin: count the nonzeros of d(out)/d(in).
    x = torch.rand(1, 1, h, w)
    jacobian = torch.autograd.functional.jacobian(lambda t: F.adaptive_avg_pool2d(t, (oh, ow)), x)
    ours = cost("adaptive_avgpool2d", x.shape, output_size=(oh, ow))
    assert ours.out_shape == (1, 1, oh, ow)
    assert ours.macs == int((jacobian != 0).sum())


def test_lecture_inception_5x5():
    # The lecture: a 5x5 conv 480 -> 48 on 14x14 ('same' padding 2).
    c = cost("conv2d", (1, 480, 14, 14), out_channels=48, kernel=5, padding=2)
    assert c.out_shape == (1, 48, 14, 14)
    assert c.macs == (14 * 14 * 48) * (5 * 5 * 480) == 112_896_000
    assert c.params == 5 * 5 * 480 * 48 == 576_000


def test_depthwise_is_groups_equal_channels():
    # Depthwise 3x3 on 32x112x112: each output reads 3*3*1 inputs.
    c = cost("conv2d", (1, 32, 112, 112), out_channels=32, kernel=3, padding=1, groups=32)
    assert c.macs == 32 * 112 * 112 * (3 * 3 * 1) == 3_612_672
    assert c.params == 32 * 1 * 3 * 3


def test_batchnorm_and_activation_count_one_op_per_element():
    bn = cost("batchnorm2d", (2, 64, 56, 56))
    assert bn.macs == 2 * 64 * 56 * 56 and bn.params == 2 * 64 and bn.buffers == 2 * 64
    assert cost("silu", (1, 8, 4, 4)).macs == 8 * 4 * 4


def test_residual_add_and_broadcast_mul():
    assert cost("add", (1, 256, 56, 56)).macs == 256 * 56 * 56
    se_scale = cost("mul", (1, 96, 28, 28), other=(1, 96, 1, 1))
    assert se_scale.out_shape == (1, 96, 28, 28) and se_scale.macs == 96 * 28 * 28


def test_concat_shapes_and_traffic():
    c = cost("concat", (1, 64, 28, 28), others=[(1, 128, 28, 28), (1, 32, 28, 28)])
    assert c.out_shape == (1, 64 + 128 + 32, 28, 28) and c.macs == 0
    assert c.bytes_read("fp32") == 4 * (64 + 128 + 32) * 28 * 28
    assert c.bytes_written("fp16") == 2 * 224 * 28 * 28


def test_squeeze_excitation_parts_sum():
    # SE on 1x96x28x28 squeezing to 24: pool 96*28*28 adds, fc1 96*24 MACs, fc2 24*96, scale 96*28*28.
    se = cost("squeeze_excitation", (1, 96, 28, 28), squeeze_channels=24, activation="silu")
    parts = dict(se.parts)
    assert parts["avgpool"].macs == 96 * 28 * 28
    assert parts["fc1"].macs == 96 * 24 and parts["fc2"].macs == 24 * 96
    assert parts[""].macs == 96 * 28 * 28
    assert se.params == (96 * 24 + 24) + (24 * 96 + 96)
    assert se.macs == 2 * 96 * 28 * 28 + 2 * 96 * 24 + 24 + 96


def test_intensity_is_flops_per_byte():
    c = cost("conv2d", (1, 16, 8, 8), out_channels=16, kernel=3, padding=1)
    moved = 4 * (16 * 8 * 8 + 16 * 16 * 9) + 4 * 16 * 8 * 8
    assert c.intensity("fp32") == pytest.approx(2 * 16 * 8 * 8 * 16 * 9 / moved)


def test_window_out_floor_and_ceil():
    assert window_out(112, 3, 2, 0, 1) == (112 - 3) // 2 + 1 == 55
    assert window_out(112, 3, 2, 0, 1, ceil_mode=True) == math.ceil((112 - 3) / 2) + 1 == 56


@pytest.mark.parametrize("kind, hyper, message", [
    ("conv2d", dict(out_channels=10, kernel=3, groups=4), "groups=4 must divide"),
    ("conv2d", dict(out_channels=8, kernel=9), "larger than the padded input"),
    ("conv2d", dict(out_channels=8, kernel=3, stride=0), "stride must be positive"),
    ("maxpool2d", dict(kernel=3, padding=-1), "padding must not be negative"),
    ("nonsense", {}, "no formula for layer kind 'nonsense'"),
])
def test_bad_hyper_parameters_name_the_problem(kind, hyper, message):
    with pytest.raises(CnnCostError, match=message):
        cost(kind, (1, 8, 5, 5), **hyper)


def test_non_positive_shape_is_an_error():
    with pytest.raises(CnnCostError, match="every size must be positive"):
        cost("relu", (1, 0, 4, 4))


def test_registering_a_kind_twice_is_an_error():
    assert "conv2d" in FORMULAS
    with pytest.raises(ValueError, match="registered twice"):
        formula("conv2d", category="conv")(lambda in_shape: None)


def test_every_formula_states_itself_in_a_docstring():
    assert all((fn.__doc__ or "").strip() for fn in FORMULAS.values())
