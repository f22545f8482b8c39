"""The training step traced: backward ops costed by formulas, attributed to their modules, checked against
torch's FlopCounterMode on the same step, and by hand on a tiny net."""
import json

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnncost.cli import run
from cnncost.errors import CnnCostError
from cnncost.formulas import cost
from cnncost.trace.models import load
from cnncost.trace.step import make_optimizer, training_step
from cnncost.trace.step import prime, targets_for
from cnncost.trace.train import LOSS, trace_training

LECTURE = ["alexnet", "vgg16", "googlenet", "resnet34", "resnet50", "resnext50_32x4d", "densenet121",
           "efficientnet_b0"]

# A tiny net, its arithmetic written out (input 2x3x16x16, batch N = 2):
CONV0 = 2 * (16 * 16 * 8) * (3 * 3 * 3)  # conv 3->8, 3x3, pad 1, stride 1: 110,592 MACs
BN = 2 * 8 * 16 * 16  # batch norm over 2x8x16x16: 4,096 elements
CONV3 = 2 * (8 * 8 * 16) * (3 * 3 * 8)  # conv 8->16, 3x3, stride 2, pad 1 -> 8x8: 73,728 MACs (+ bias)
POOL_OUT = 2 * 16 * 4 * 4  # max pool 2x2 over 16x8x8 -> 2x16x4x4 = 512 outputs
FC = 2 * 16 * 10  # linear 16->10: 320 MACs (+ bias)


def tiny_net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(16, 10))


def tiny_step(input_grad=False, optimizer="sgd"):
    with torch.device("meta"):
        model = tiny_net()
    result = trace_training(model, torch.empty(2, 3, 16, 16, device="meta"), targets_for(2), optimizer,
                            input_grad=input_grad)
    rows = {r["name"]: r for r in result.table.to_dict("records") if r["category"] != "elementwise"}
    loss = result.table[result.table.name == LOSS]  # the loss's ops, one row each
    rows[LOSS] = {c: loss[c].sum() for c in loss.columns if loss[c].dtype.kind == "i"}
    return result, rows


def test_tiny_net_backward_by_hand():
    result, rows = tiny_step()
    conv0, bn, relu, conv3, pool, fc = (rows[n] for n in ("0", "1", "2", "3", "4", "7"))
    # first layer, the image needs no gradient: forward and grad-weight only
    assert (conv0["forward_macs"], conv0["grad_input_macs"], conv0["grad_weight_macs"]) == (CONV0, 0, CONV0)
    # a strided conv: grad-input (a transposed conv) and grad-weight are the forward's MACs again; dB = sum dY
    assert (conv3["grad_input_macs"], conv3["grad_weight_macs"]) == (CONV3, CONV3)
    assert conv3["grad_bias_adds"] == 2 * 16 * 8 * 8 == conv3["bias_adds"]  # one add per output element
    # batch norm backward: dX = a dY + b x + c (2/element), d gamma = sum dY x^ (1), d beta = sum dY (1 add)
    assert (bn["grad_input_macs"], bn["grad_weight_macs"], bn["grad_bias_adds"]) == (2 * BN, BN, BN)
    assert relu["grad_input_macs"] == BN  # dY * (x > 0): 1 per element
    assert pool["grad_input_macs"] == POOL_OUT  # each output's gradient added at its argmax
    assert (fc["grad_input_macs"], fc["grad_weight_macs"], fc["grad_bias_adds"]) == (FC, FC, 2 * 10)
    # the loss: log-softmax backward 2 ops per logit (2 x 10), nll backward 1 per row (2)
    assert rows[LOSS]["grad_input_macs"] == 2 * 2 * 10 + 2
    # SGD with momentum and weight decay, per parameter: g + wd p, b = m b + g, p -= lr b: 4 ops
    assert conv0["optimizer_macs"] == 4 * (8 * 3 * 3 * 3) and fc["optimizer_macs"] == 4 * (16 * 10 + 10)
    assert result.totals()["train_macs"] == int(result.table[["forward_macs", "grad_input_macs",
                                                               "grad_weight_macs", "optimizer_macs"]].sum().sum())


def test_an_input_that_needs_a_gradient_gives_the_first_layer_its_grad_input():
    _, rows = tiny_step(input_grad=True)
    assert rows["0"]["grad_input_macs"] == CONV0


def test_adamw_updates_every_parameter_of_every_module():
    result, rows = tiny_step(optimizer="adamw")
    owners = {r["name"]: r["optimizer_macs"] for r in result.table.to_dict("records") if r["params"]}
    assert set(owners) == {"0", "1", "3", "7"} and all(v > 0 for v in owners.values())
    assert rows[LOSS]["optimizer_macs"] == 0


def test_backward_formulas_follow_their_output_mask():
    full = cost("conv_backward", (2, 8, 8, 8), out_channels=16, kernel=3, padding=1, output_mask=(1, 1, 1))
    weight_only = cost("conv_backward", (2, 8, 8, 8), out_channels=16, kernel=3, padding=1,
                       output_mask=(0, 1, 0))
    forward = 2 * (8 * 8 * 16) * (3 * 3 * 8)  # 147,456 MACs
    assert [(n, p.macs, p.bias_adds) for n, p in full.parts] == [
        ("grad_input", forward, 0), ("grad_weight", forward, 0), ("grad_bias", 0, 2 * 16 * 8 * 8)]
    assert weight_only.macs == forward and weight_only.bias_adds == 0
    no_affine = cost("norm_backward", (2, 4, 3, 3), output_mask=(1, 0, 0))
    assert no_affine.macs == 4 * 72  # the two sums are still needed for dX: 2 + 1 + 1 per element


def torch_flops(model, x, input_grad):
    """torch's FlopCounterMode over the same training step (conv and matrix products only, 2 FLOPs per MAC)."""
    optimizer = make_optimizer(model)
    prime(optimizer)
    with FlopCounterMode(display=False) as counter:
        training_step(model, (x.detach().requires_grad_(input_grad),), targets_for(x.shape[0]), optimizer)
    return counter.get_total_flops()


@pytest.mark.parametrize("input_grad", [False, True], ids=["image", "input-grad"])
@pytest.mark.parametrize("name", LECTURE)
def test_core_macs_equal_torchs_counter_on_the_same_step(name, input_grad):
    source = load(name)
    model = source.build("meta")
    x = source.input(2, None, "meta")
    result = trace_training(model, x, targets_for(2), input_grad=input_grad)
    groups = {r: getattr(m, "groups", 1) for r, m in model.named_modules()}
    core = result.table[result.table.category.isin(["conv", "linear"])]
    # torch 2.14's conv_backward_flop counts a grouped conv's dW as if ungrouped: groups x too many (fixed
    # upstream in pytorch/pytorch#183405, "// _groups"); predict its number instead of tolerating a gap.
    torch_dw = sum(int(dw) * groups.get(n, 1) for n, dw in zip(core.name, core.grad_weight_macs))
    predicted = result.core("forward_macs") + result.core("grad_input_macs") + torch_dw
    assert 2 * predicted == torch_flops(model, x, input_grad)
    assert result.core("grad_weight_macs") == result.core("forward_macs")  # every weight gets its gradient
    first = core.iloc[0]
    assert (first.grad_input_macs == first.forward_macs) == input_grad
    assert not result.unsupported  # every op of forward, loss, backward and SGD has a formula (or is free)


def test_resnet18_with_an_input_gradient_costs_exactly_six_times_the_forward_in_torchs_flops():
    source = load("resnet18")
    model = source.build("meta")
    x = source.input(1, None, "meta")
    result = trace_training(model, x, targets_for(1), input_grad=True)
    forward = result.core("forward_macs")
    assert forward == 1_814_073_344  # torchvision's _ops for resnet18: 1.814 GMACs
    assert result.core("grad_input_macs") == result.core("grad_weight_macs") == forward
    assert torch_flops(model, x, True) == 6 * forward  # 3 passes x 2 FLOPs per MAC


def test_every_conv_and_linear_row_holds_its_own_backward():
    source = load("resnet50")
    result = trace_training(source.build("meta"), source.input(1, None, "meta"), targets_for(1))
    core = result.table[result.table.category.isin(["conv", "linear"])]
    assert (core.grad_weight_macs == core.forward_macs).all()
    assert (core.grad_input_macs.iloc[1:] == core.forward_macs.iloc[1:]).all() and core.grad_input_macs.iloc[0] == 0
    assert not result.unsupported


def test_bad_optimizer_or_dtype_is_one_line():
    with pytest.raises(CnnCostError, match="optimizer"):
        tiny_step(optimizer="lion")


def test_cli_train_json(capsys):
    status = run(["train", "resnet18", "--batch", "2", "-f", "json"])
    data = json.loads(capsys.readouterr().out)
    totals = data["totals"]
    assert status == 0 and data["batch"] == 2 and data["input_shape"] == [2, 3, 224, 224]
    assert totals["core_forward_macs"] == 2 * 1_814_073_344  # torchvision's _ops, per image x 2
    first = 2 * (112 * 112 * 64) * (7 * 7 * 3)  # stem conv 7x7/2: no grad-input for the image
    assert totals["core_train_macs"] == 3 * totals["core_forward_macs"] - first
    assert totals["train_macs"] == sum(r["train_macs"] for r in data["rows"])
    assert {"forward_macs", "grad_input_macs", "grad_weight_macs", "optimizer_macs", "saved_bytes"} <= set(
        data["rows"][0])


def test_cli_train_bad_input_is_one_line(capsys):
    assert run(["train", "resnet18", "--optimizer", "lion"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnncost: error:") and err.count("\n") == 1
    assert run(["train", "resnet18", "--fit", "lots"]) == 2
    assert "unknown device" in capsys.readouterr().err


def test_cli_train_fits_a_batch_into_a_memory(capsys):
    status = run(["train", "resnet18", "--fit", "2GB", "--input-grad", "-f", "json"])
    data = json.loads(capsys.readouterr().out)
    fit = data["fit"]
    assert status == 0 and fit["memory_bytes"] == 2 * 10**9 and fit["largest_batch"] > 1
    assert data["input_grad"] and data["rows"][0]["grad_input_macs"] == data["rows"][0]["forward_macs"]


def test_mixed_precision_changes_bytes_not_macs():
    source = load("resnet18")
    counts = [trace_training(source.build("meta"), source.input(2, None, "meta"), targets_for(2), dtype=d).totals()
              for d in ("fp32", "bf16")]
    assert counts[0] == counts[1]


def test_checkpointed_densenet_recomputes_each_layers_batch_norm_and_relu_in_backward():
    results = {}
    for efficient in (False, True):
        with torch.device("meta"):
            model = torchvision.models.densenet121(memory_efficient=efficient)
        results[efficient] = trace_training(model, torch.empty(1, 3, 224, 224, device="meta"), targets_for(1))
    plain, checkpointed = results[False], results[True]
    for column in ("forward_macs", "grad_input_macs", "grad_weight_macs"):
        assert plain.totals()[column] == checkpointed.totals()[column]
    table = plain.table
    first_halves = table.name.str.contains(r"denselayer\d+\.(?:norm1|relu1)$")
    # checkpointing re-runs norm1 -> relu1 (what conv1 saved) once more in backward; conv1's own output is not
    # needed by any backward, so torch's early stop skips it
    assert checkpointed.totals()["recompute_macs"] == int(table.forward_macs[first_halves].sum())


def test_attention_products_are_classified_one_by_one_and_match_torch():
    source = load("vit_b_16")
    model = source.build("meta")
    x = source.input(1, None, "meta")
    result = trace_training(model, x, targets_for(1))
    predicted = sum(result.core(c) for c in ("forward_macs", "grad_input_macs", "grad_weight_macs"))
    assert 2 * predicted == torch_flops(model, x, False)  # no grouped convs: torch's count is exact here
    # every weight of every Linear gets its dW; the attention's Q K^T and A V products (no weights) give dX only
    linear = result.table[result.table.module.isin(["Linear", "NonDynamicallyQuantizableLinear"])]
    assert (linear.grad_weight_macs == linear.forward_macs).all()


@pytest.mark.parametrize("fit, message", [("", "positive size"), ("-1GB", "positive size"),
                                          ("1KB", "not even batch 1 fits")])
def test_fit_that_cannot_apply_is_one_line(capsys, fit, message):
    assert run(["train", "resnet18", "--size", "64", "--fit", fit]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cnncost: error:") and message in err[0]


def test_a_model_with_nothing_to_train_is_one_line(tmp_path, capsys):
    (tmp_path / "free.py").write_text("import torch\n\ndef make():\n    return torch.nn.ReLU()\n")
    assert run(["train", f"{tmp_path / 'free.py'}:make", "--input", "2x10"]) == 2
    assert "no trainable parameters" in capsys.readouterr().err
