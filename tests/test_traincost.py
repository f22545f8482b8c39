"""Training cost: per-kind backward factors derived by hand and checked against torch's own counter."""
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnncost.bench import csvio
from cnncost.bench.traincost import IMAGENET_1K_TRAIN, by_kind, train_cost, training_table
from cnncost.errors import CnnCostError
from cnncost.result import Result
from cnncost.specs import MODELS
from cnncost.specs.base import Builder

# A tiny net, with its arithmetic written out (input 1x3x16x16):
CONV1 = (16 * 16 * 8) * (3 * 3 * 3)  # conv 3->8, 3x3, pad 1: 55,296 MACs
CONV2 = (8 * 8 * 16) * (3 * 3 * 8)  # conv 8->16, 3x3, stride 2, pad 1 -> 8x8: 73,728 MACs
FC = 16 * 10  # linear 16->10: 160 MACs
BN = 16 * 16 * 8  # batch norm over 8x16x16: 2,048 elements
RELU = 16 * 16 * 8
POOL_OUT = 16 * 4 * 4  # max pool 2x2 over 16x8x8 -> 16x4x4: 256 outputs, 4 compares each
ADAPT = 16 * 4 * 4  # adaptive avg pool reads 256 elements


def tiny_spec():
    """The tiny net as an analytic spec."""
    b = Builder("tiny", (1, 3, 16, 16))
    b.add("0", "conv2d", out_channels=8, kernel=3, padding=1)
    b.add("1", "batchnorm2d")
    b.add("2", "relu")
    b.add("3", "conv2d", out_channels=16, kernel=3, stride=2, padding=1)
    b.add("4", "maxpool2d", kernel=2)
    b.add("5", "adaptive_avgpool2d", output_size=1)
    b.add("6", "flatten")
    b.add("7", "linear", out_features=10, bias=False)
    return b.spec


def tiny_module():
    """The same net in torch."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.MaxPool2d(2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10, bias=False))


@pytest.fixture(scope="module")
def tiny():
    return training_table(Result.from_spec(tiny_spec()).table)


def test_each_kind_follows_its_stated_rule(tiny):
    got = dict(zip(tiny.name, tiny.train_macs))
    assert got["0"] == 2 * CONV1  # first layer: forward + grad-weight, the image needs no gradient
    assert got["1"] == 7 * BN  # training BN: 3 forward (sum, sum of squares, scale-shift) + 4 backward
    assert got["2"] == 2 * RELU
    assert got["3"] == 3 * CONV2  # forward + grad-input + grad-weight
    assert got["4"] == POOL_OUT * 2 * 2 + POOL_OUT  # k*k compares forward, one routed gradient per output
    assert got["5"] == 2 * ADAPT
    assert got["6"] == 0
    assert got["7"] == 3 * FC


def test_core_training_macs_equal_torchs_count_of_forward_and_backward(tiny):
    core = tiny.train_macs[tiny.category.isin(["conv", "linear"])].sum()
    assert core == 2 * CONV1 + 3 * CONV2 + 3 * FC == 332_256
    model = tiny_module().train()
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, 16, 16)).sum().backward()
    assert core == counter.get_total_flops() // 2  # torch counts conv/mm only, 2 FLOPs per MAC


def test_grouped_conv_backward_is_two_forwards_not_groups_times_more():
    b = Builder("dw", (1, 32, 8, 8))
    b.add("0", "conv2d", out_channels=32, kernel=1)
    b.add("1", "conv2d", out_channels=32, kernel=3, padding=1, groups=32)
    table = training_table(Result.from_spec(b.spec).table)
    depthwise = (8 * 8 * 32) * (3 * 3)  # 18,432 MACs; grad-weight: 288 weights x 64 positions = 18,432 again
    assert table.train_macs[1] == 3 * depthwise


def test_per_kind_summary_keeps_the_first_layer_apart(tiny):
    kinds = by_kind(tiny)
    convs = [k for k in kinds if k["kind"] == "conv2d"]
    assert [(k["factor"], k["layers"], k["train_macs"]) for k in convs] == [("2F", 1, 2 * CONV1), ("3F", 1, 3 * CONV2)]
    assert all(k["why"] for k in kinds)
    assert sum(k["train_macs"] for k in kinds) == tiny.train_macs.sum()


@pytest.mark.skipif("resnet50" not in MODELS, reason="analytic ResNet-50 not registered")
def test_resnet50_90_epochs_on_imagenet():
    cost = train_cost("resnet50", epochs=90, device_key="h100-sxm", dtype="bf16", mfu=0.3)
    with torch.device("meta"):
        import torchvision
        model = torchvision.models.resnet50().train()
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(1, 3, 224, 224)).sum().backward()
    assert cost.train_macs_per_image == counter.get_total_flops() // 2  # no grouped convs: torch is right here
    assert cost.forward_macs_per_image == 4_089_184_256  # torchvision _ops 4.089 GMACs
    assert cost.images == 90 * 1_281_167 == 115_305_030 and IMAGENET_1K_TRAIN == 1_281_167
    assert cost.total_train_macs == cost.images * cost.train_macs_per_image
    (estimate,) = cost.estimates
    hours = 2 * cost.total_train_macs / (0.3 * 989.5e12) / 3600  # FLOPs / (MFU x dense bf16 peak) / 3600
    assert estimate["gpu_hours"] == pytest.approx(hours, abs=1e-3) and estimate["mfu"] == 0.3


def test_a_measured_training_row_gives_hours_at_that_rate(tmp_path):
    path = tmp_path / "bench.csv"
    base = {**dict.fromkeys(csvio.SCHEMA, ""), "model": "resnet18", "mode": "train", "size": 224, "dtype": "bf16",
            "batch": 256, "device_name": "NVIDIA H100 80GB HBM3", "compile": True, "channels_last": True}
    csvio.append_rows(path, [{**base, "img_per_s": 3000.0}, {**base, "img_per_s": 9999.0, "dtype": "fp32"},
                             {**base, "error": "OutOfMemoryError: CUDA out of memory"}])
    measured, assumed = train_cost("resnet18", epochs=90, csv=path).estimates
    assert measured["img_per_s"] == 3000.0 and "NVIDIA H100 80GB HBM3" in measured["basis"]
    assert measured["gpu_hours"] == pytest.approx(90 * 1_281_167 / 3000 / 3600, abs=1e-3)  # 10.677 hours
    assert assumed["mfu"] == 0.3


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "must be positive"), ({"dataset_size": -1}, "must be positive"),
    ({"mfu": 1.5}, "MFU must be"), ({"device_key": "tpu-v9"}, "unknown device"),
    ({"device_key": "v100", "dtype": "bf16"}, "no bf16"),
])
def test_bad_budgets_are_one_line_errors(kwargs, message):
    with pytest.raises(CnnCostError, match=message):
        train_cost("resnet18", **kwargs)


def test_models_without_a_spec_are_traced_and_follow_the_same_rules():
    if "mobilenet_v2" in MODELS:
        pytest.skip("mobilenet_v2 now has an analytic spec")
    cost = train_cost("mobilenet_v2", epochs=1)
    first = (112 * 112 * 32) * (3 * 3 * 3)  # stem conv 3->32, 3x3, stride 2: 10,838,016 MACs
    assert cost.source.startswith("cnncost train") and {k["kind"] for k in cost.kinds} >= {"conv2d", "relu6", "add"}
    assert cost.train_macs_per_image == 3 * cost.forward_macs_per_image - first
    assert cost.forward_macs_per_image == 601_548_544 // 2  # torch.utils.flop_counter: 601,548,544 FLOPs


def test_per_kind_table_has_one_basis_the_inference_forward():
    cost = train_cost("resnet18", epochs=1)
    kinds = {(k["kind"], k["factor"]): k for k in cost.kinds}
    bn = kinds["batchnorm2d", "7F"]
    # Inference folds batch norm to x * scale + shift: 1 op per element, F. Training: forward 4 (mean, centre,
    # square-sum, 1/std scale) + 1 (affine), backward dX 2 + d-gamma/d-beta 1: 8 ops per element = 8F.
    assert bn["training_forward_macs"] == 5 * bn["inference_macs"]
    # num_batches_tracked += 1 in each of the 20 batch norms is an add of its own, on the add rows
    add = kinds["add", "2F"]
    assert add["training_forward_macs"] == add["inference_macs"] + 20
    assert bn["train_macs"] == bn["training_forward_macs"] + 3 * bn["inference_macs"]
    assert bn["measured"] == f"{bn['train_macs'] / bn['inference_macs']:.3f}F" == "8.000F"
    assert kinds["conv2d", "2F"]["measured"] == "2.000F" and kinds["conv2d", "3F"]["measured"] == "3.000F"
    assert kinds["log_softmax", "2F"]["inference_macs"] == 0 and kinds["log_softmax", "2F"]["measured"] == ""
    assert train_cost("resnet18", epochs=1, per_kind=False).kinds == []
