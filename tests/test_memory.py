"""Training-step memory predicted on meta (cnncost.trace.memory) against hand derivations and a real CPU step.

The real step is measured by torch.profiler's memory events (every allocation and free), independent of our
storage tracking; each model is measured once (module-scoped fixture).
"""
from __future__ import annotations

from collections import Counter

import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

from cnncost.errors import CnnCostError
from cnncost.trace.memory import (
    largest_batch,
    largest_fitting,
    measure_cpu_step,
    parse_memory,
    predict_memory,
)
from cnncost.trace.step import autocast, targets_for

# (model, torchvision kwargs, batch, input size): small enough that all real steps take well under a minute.
REAL = {
    "resnet18": ("resnet18", {}, 4, 96),
    "resnet50": ("resnet50", {}, 4, 96),
    "densenet121": ("densenet121", {}, 4, 96),
    "densenet121_memory_efficient": ("densenet121", {"memory_efficient": True}, 4, 96),
    "efficientnet_b0": ("efficientnet_b0", {}, 4, 96),
    "vgg16": ("vgg16", {}, 2, 64),
}
TOLERANCE = 0.05


def build(name: str, kwargs: dict, device: str) -> torch.nn.Module:
    """A torchvision model with no weights loaded; on the CPU its parameters are zeros (values do not change
    memory, and VGG's 138M random initialisations would cost seconds)."""
    with torch.device("meta"):
        model = getattr(torchvision.models, name)(**kwargs)
    if device == "cpu":
        model = model.to_empty(device="cpu")
        with torch.no_grad():
            for t in (*model.parameters(), *model.buffers()):
                t.zero_()
    return model


def batch(size: int, n: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.empty(n, 3, size, size, device=device)
    y = torch.zeros(n, dtype=torch.long, device=device)
    return (x.normal_() if device == "cpu" else x), y


def predicted(key: str, dtype: str = "fp32", optimizer: str = "sgd"):
    name, kwargs, n, size = REAL[key]
    x, y = batch(size, n, "meta")
    return predict_memory(build(name, kwargs, "meta"), (x,), y, optimizer=optimizer, dtype=dtype)


def measured(key: str, dtype: str = "fp32"):
    name, kwargs, n, size = REAL[key]
    torch.manual_seed(0)
    x, y = batch(size, n, "cpu")
    return measure_cpu_step(build(name, kwargs, "cpu"), (x,), y, dtype=dtype)


@pytest.fixture(scope="module", params=list(REAL))
def pair(request):
    """(key, prediction on meta, measurement on the CPU) for one model, measured once."""
    return request.param, predicted(request.param), measured(request.param)


def test_peak_within_5_percent_of_a_real_cpu_step(pair):
    key, prediction, real = pair
    assert prediction.totals["peak_bytes"] == pytest.approx(real["peak_bytes"], rel=TOLERANCE), key


def test_saved_activations_within_5_percent_of_the_bytes_forward_leaves_live(pair):
    """What the forward (and loss) leaves allocated when backward starts is what autograd saved for it."""
    key, prediction, real = pair
    assert prediction.totals["saved_activations_bytes"] == pytest.approx(real["forward_retained_bytes"],
                                                                         rel=TOLERANCE), key


def test_bf16_autocast_on_meta_predicts_a_real_cpu_autocast_step():
    prediction, real = predicted("resnet18", "bf16"), measured("resnet18", "bf16")
    assert prediction.totals["peak_bytes"] == pytest.approx(real["peak_bytes"], rel=TOLERANCE)
    assert prediction.totals["saved_activations_bytes"] == pytest.approx(real["forward_retained_bytes"],
                                                                         rel=TOLERANCE)


class OpDtypes(TorchDispatchMode):
    """Counts (aten op, output dtypes): what autocast decided, op by op."""

    def __init__(self):
        super().__init__()
        self.seen = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outs = out if isinstance(out, (tuple, list)) else (out,)
        self.seen[str(func), tuple(str(o.dtype) for o in outs if isinstance(o, torch.Tensor))] += 1
        return out


@pytest.mark.parametrize(("name", "kwargs"), [("resnet18", {}), ("efficientnet_b0", {}), ("densenet121", {}),
                                             ("densenet121", {"memory_efficient": True})])
def test_meta_autocast_casts_every_op_as_torch_autocast_does_on_the_cpu(name, kwargs):
    """For these CNNs CUDA's and the CPU's autocast lists agree (conv and linear low, the rest as given); the
    checkpointed DenseNet recomputes its bottlenecks in backward under autocast too."""
    def ops(device):
        model = build(name, kwargs, device).train()
        x, _ = batch(32, 2, device)
        with OpDtypes() as mode:
            with autocast(device, "bf16"):
                out = model(x)
            out.float().sum().backward()
        return mode.seen

    assert ops("meta") == ops("cpu")


def tiny():
    """conv 3->8 3x3 (pad 1), ReLU, flatten, linear 8*4*4 -> 5."""
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(8 * 4 * 4, 5))


def test_tiny_model_bytes_derived_by_hand():
    with torch.device("meta"):
        model = tiny()
    x, y = batch(4, 2, "meta")
    report = predict_memory(model, x, y, optimizer="adamw")
    params = 8 * 3 * 3 * 3 + 8 + 8 * 4 * 4 * 5 + 5  # 216 + 8 + 640 + 5 = 869
    t = report.totals
    assert t["params_bytes"] == t["grads_bytes"] == params * 4  # 3476
    # AdamW: exp_avg and exp_avg_sq per parameter, and a float32 scalar `step` per tensor (4 tensors)
    assert t["optimizer_state_bytes"] == 2 * params * 4 + 4 * 4
    saved = dict(zip(report.per_module.name, report.per_module.saved_bytes))
    # conv saves the input and its weight (not activations); ReLU saves its output 2 x 8 x 4 x 4 x 4 B = 1024;
    # flatten is a view and linear saves that view: the same storage, not counted again.
    assert saved["1"] == 2 * 8 * 4 * 4 * 4
    assert saved["0"] == saved["2"] == saved["3"] == 0
    assert t["saved_activations_bytes"] == sum(saved.values())


def test_cuda_allocator_rounds_each_storage_to_512_bytes():
    with torch.device("meta"):
        model = tiny()
    x, y = batch(4, 2, "meta")
    exact = predict_memory(model, x, y).totals
    cuda = predict_memory(model, x, y, allocator="cuda").totals
    # 4 parameter tensors of 864, 32, 2560, 20 bytes -> 1024 + 512 + 2560 + 512
    assert exact["params_bytes"] == 864 + 32 + 2560 + 20
    assert cuda["params_bytes"] == 1024 + 512 + 2560 + 512


@given(st.integers(0, 3000), st.integers(1, 6000))
def test_search_finds_the_largest_fitting_batch_from_any_guess(answer, guess):
    assert largest_fitting(lambda b: b <= answer, guess) == answer


def test_largest_batch_is_the_boundary_of_the_prediction():
    """Batch b fits 300 MB on resnet18 at 64x64 and b + 1 does not, by predict_memory's own peak (cuda rounding)."""
    limit = 300 * 10**6
    found = largest_batch("resnet18", limit, size=64)

    def peak(n):
        with torch.device("meta"):
            model = torchvision.models.resnet18()
        x, y = batch(64, n, "meta")
        return predict_memory(model, x, y, allocator="cuda").totals["peak_bytes"]

    assert found > 0
    assert peak(found) <= limit < peak(found + 1)


def test_memory_sizes_and_devices():
    assert parse_memory("80GB") == 80 * 10**9
    assert parse_memory("40GiB") == 40 * 2**30
    # a device's usable memory, what torch reports on it (an H100's 80 GiB of HBM3: 79.11 GiB; an RTX 4090's 24 GiB
    # of GDDR6X: 23.64 GiB), not the marketing figure
    assert parse_memory("h100-sxm") == int(79.11 * 2**30)
    assert parse_memory("rtx4090") == int(23.64 * 2**30)
    assert parse_memory(1234) == 1234
    for bad in ("0GB", "80", "-1GB", "h999"):
        with pytest.raises(CnnCostError):
            parse_memory(bad)


def test_bad_options_are_one_line_errors():
    with torch.device("meta"):
        model = tiny()
    x, y = batch(4, 2, "meta")
    for kwargs in ({"optimizer": "lion"}, {"dtype": "int8"}, {"allocator": "tpu"}):
        with pytest.raises(CnnCostError):
            predict_memory(model, x, y, **kwargs)


def test_training_page_model_section_writes_its_plot(tmp_path):
    from cnncost.report import training
    row, text = training.model_section("alexnet", tmp_path)
    assert (tmp_path / "alexnet_train_memory.png").exists()
    assert row["largest_batch_h100-sxm"] >= row["largest_batch_a100-40gb"] >= row["largest_batch_rtx4090"] > 0
    assert row["train_core_macs"] > row["inference_core_macs"] and "peak_mib" in text


def test_densenet_lesson_concatenations_and_recomputation():
    """Traced bytes norm1 saves = batch x channels x H x W x 4 + mean and inverse std (2 x channels x 4);
    checkpointing recomputes norm1 and relu1 only: torch's counter sees no extra conv FLOP."""
    from cnncost.report import training
    numbers = training.densenet_numbers(batch=2)
    for row in numbers["concat"]:
        assert row["traced_norm1_bytes"] == row["derived_norm1_bytes"], row["block"]
    assert numbers["saved"][True] < numbers["saved"][False]
    assert numbers["extra_macs"] == numbers["norm1_relu1_forward_macs"] > 0
    plain, checkpointed = numbers["compare"]
    assert plain["torch_flop_counter_flops_per_image"] == checkpointed["torch_flop_counter_flops_per_image"]


def test_the_prediction_uses_no_memory_that_grows_with_the_batch():
    """Python-side allocations of a prediction at batch 4096 are no larger than at batch 8 (meta: no data)."""
    import tracemalloc

    def allocated(n):
        with torch.device("meta"):
            model = tiny()
        x, y = batch(4, n, "meta")
        tracemalloc.start()
        predict_memory(model, x, y)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    allocated(8)  # warm caches
    assert allocated(4096) < 1.5 * allocated(8)
    assert predict_memory(tiny().to("meta"), *batch(4, 4096, "meta")).totals["peak_bytes"] > 4096 * 8 * 4 * 4 * 4


class NextBlock(torch.nn.Module):
    """ConvNeXt's block, small: a 7x7 depthwise conv whose input a permute leaves channels-last, a layer norm over
    channels, an MLP, and a residual."""

    def __init__(self, dim: int = 32):
        super().__init__()
        self.dw = torch.nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = torch.nn.LayerNorm(dim)
        self.fc1, self.fc2 = torch.nn.Linear(dim, 4 * dim), torch.nn.Linear(4 * dim, dim)

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(torch.nn.functional.gelu(self.fc1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


class TinyAttention(torch.nn.Module):
    """A transformer block's attention by F.scaled_dot_product_attention, and one by nn.MultiheadAttention."""

    def __init__(self, dim: int = 32):
        super().__init__()
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.mha = torch.nn.MultiheadAttention(dim, 4, batch_first=True)

    def forward(self, x):
        q, k, v = self.qkv(x).unflatten(-1, (3, 4, -1)).permute(2, 0, 3, 1, 4)
        x = x + torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        return x + self.mha(x, x, x, need_weights=False)[0]


class Norm2d(torch.nn.LayerNorm):
    """ConvNeXt's LayerNorm2d: a layer norm over channels, through a permute there and back (channels-last out)."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


@pytest.mark.parametrize("make, shape, tolerance", [
    (lambda: torch.nn.Sequential(torch.nn.Conv2d(3, 48, 4, stride=4), Norm2d(48), torch.nn.Conv2d(48, 96, 2, 2),
                                 NextBlock(96), NextBlock(96), torch.nn.Flatten(), torch.nn.LazyLinear(10)),
     (2, 3, 112, 112), 0.02),
    # flash attention's backward holds a scratch of about 3 x q's bytes (not modelled): 3% of a toy's peak, 1.2%
    # of ViT-B/16's at batch 2 and none left at batch 8
    (lambda: torch.nn.Sequential(TinyAttention(64), torch.nn.Flatten(), torch.nn.LazyLinear(10)), (2, 197, 64),
     0.04),
])
def test_kernel_scratch_layouts_and_fused_attention_as_a_cpu_step_has_them(make, shape, tolerance):
    """What a real CPU step holds that meta kernels do not show: oneDNN's scratch for a channels-last depthwise 7x7
    backward (96 x 7 x 7 x 256 floats here), a conv's channels-last output, and attention as the fused kernel
    (its output and log-sum-exp kept, not the attention matrix): predicted peak and saved bytes equal a
    measured step's (the peak within a tolerance: some kernels' own small scratch is not modelled)."""
    torch.manual_seed(0)
    model = make()
    model(torch.randn(shape))  # materialise the lazy head
    state = model.state_dict()
    with torch.device("meta"):
        on_meta = make()
        on_meta(torch.empty(shape))
    on_meta.load_state_dict(state, assign=True)
    x_meta, y = torch.empty(shape, device="meta"), targets_for(shape[0])
    predicted_totals = predict_memory(on_meta.to("meta"), x_meta, y).totals
    measured_totals = measure_cpu_step(model, (torch.randn(shape),), targets_for(shape[0], "cpu"))
    assert predicted_totals["forward_retained_bytes"] == measured_totals["forward_retained_bytes"]
    assert abs(predicted_totals["peak_bytes"] / measured_totals["peak_bytes"] - 1) < tolerance
