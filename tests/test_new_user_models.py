"""Models nobody here wrote, tried as a new user would: each test pins one class of failure found that way.

Expected numbers are derived in the comments or come from torch's FlopCounterMode (FLOPs = 2 x MACs) on the same
module and input; a grouped conv's grad-weight is not involved (torch 2.14 counts it groups x too many).
"""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnncost.cli import run
from cnncost.compat import cpu_attention_is_fused
from cnncost.trace import count
from cnncost.trace.step import as_inputs, make_optimizer, training_step
from cnncost.trace.step import targets_for
from cnncost.trace.train import trace_training
from tests.modules import Lambda

USER_FILE = '''
import torch
from torch import nn


class TextClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 16)
        self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), 1)
        self.head = nn.Linear(16, 3)

    def forward(self, tokens):
        return self.head(self.enc(self.emb(tokens)).mean(1))


class Masked(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x, mask):
        return self.fc(x).masked_fill(~mask.unsqueeze(-1), 0.0).sum(1)


class MakesCpuTensors(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x) + torch.ones(4)  # made on the CPU whatever device x is on: no meta run


class Scalar(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x).pow(2).mean()


def text():
    return TextClassifier()


def masked():
    return Masked(), {"x": torch.randn(2, 3, 4), "mask": torch.ones(2, 3, dtype=torch.bool)}


def cpu_tensors():
    return MakesCpuTensors()


def scalar():
    return Scalar()
'''


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "users.py"
    path.write_text(USER_FILE)
    return path


def cli(capsys, *argv) -> tuple[int, str, str]:
    status = run([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def torch_macs(model: nn.Module, *inputs) -> int:
    """torch's FlopCounterMode on one forward, halved to MACs."""
    with FlopCounterMode(display=False) as mode:
        model(*inputs)
    return mode.get_total_flops() // 2


def torch_train_macs(model: nn.Module, inputs, batch: int) -> int:
    """torch's FlopCounterMode on our training step (forward, cross-entropy, backward, SGD), halved to MACs."""
    optimizer = make_optimizer(model)
    with FlopCounterMode(display=False) as mode:
        training_step(model, inputs, targets_for(batch, "cpu"), optimizer, "fp32", "cpu")
    return mode.get_total_flops() // 2


def core_train_macs(result) -> int:
    return sum(result.core(c) for c in ("forward_macs", "grad_input_macs", "grad_weight_macs"))


def same_rows_everywhere(model: nn.Module, *inputs):
    """count() on meta and on the CPU, --strict: identical tables."""
    meta = count(model, inputs=tuple(inputs), strict=True)
    cpu = count(model, inputs=tuple(inputs), device="cpu", strict=True)
    assert (meta.device, cpu.device) == ("meta", "cpu")
    assert meta.table.equals(cpu.table)
    return meta


# -- forward ops that had no formula -----------------------------------------------------------------------------


def test_glu_is_a_sigmoid_and_a_multiply_per_output_element():
    result = same_rows_everywhere(Lambda(lambda x: F.glu(x, dim=1)), torch.randn(2, 6, 4))
    assert result.total() == 2 * (2 * 3 * 4)  # output 2x3x4 = 24 elements, 1 sigmoid + 1 multiply each = 48


@pytest.mark.parametrize("mode, weighted, expected", [
    ("sum", False, 16 * 8),            # 16 indices x 8 wide gathered, 1 add each = 128
    ("mean", False, 16 * 8 + 4 * 8),   # + 1 divide per output element (4 bags x 8) = 160
    ("max", False, 16 * 8),            # 1 compare per gathered element = 128
    ("sum", True, 2 * 16 * 8),         # + 1 multiply by its weight per gathered element = 256
])
def test_embedding_bag_gathers_and_reduces(mode, weighted, expected):
    bag = nn.EmbeddingBag(50, 8, mode=mode)
    indices = torch.arange(16).view(4, 4)
    args = (indices, None, torch.rand(4, 4)) if weighted else (indices,)
    result = same_rows_everywhere(bag, *args)
    row = result.table[result.table.kind == "embedding_bag"].iloc[0]
    assert row.macs == expected and row.params == 50 * 8
    assert row.out_shape == "4x8"


def test_logsumexp_is_four_ops_per_input_and_a_log_per_output():
    result = same_rows_everywhere(Lambda(lambda x: x.logsumexp(-1)), torch.randn(2, 5))
    assert result.total() == 4 * 10 + 2  # max, subtract, exp, add on 10 elements + 1 log on each of 2 outputs


# -- recurrent layers: one layer on every device ---------------------------------------------------------------


@pytest.mark.parametrize("make, x", [
    (lambda: nn.LSTM(16, 32, batch_first=True, bidirectional=True), torch.randn(2, 12, 16)),
    (lambda: nn.GRU(64, 24, num_layers=2, batch_first=True), torch.randn(2, 12, 64)),
    (lambda: nn.RNN(8, 5, bias=False), torch.randn(7, 3, 8)),
    (lambda: nn.RNN(8, 5, nonlinearity="relu", num_layers=3, bidirectional=True), torch.randn(7, 8)),
    (lambda: nn.LSTM(8, 6, proj_size=4, num_layers=2), torch.randn(5, 2, 8)),
], ids=["lstm-bidirectional", "gru-2-layers", "rnn-no-bias", "rnn-relu-unbatched", "lstm-projected"])
def test_rnn_matches_torch_counter_on_meta_and_has_the_same_rows_on_the_cpu(make, x):
    torch.manual_seed(0)
    model = make()
    result = same_rows_everywhere(model, x)
    assert result.core_macs == torch_macs(model.to("meta"), x.to("meta"))  # on meta the products are mm's
    assert result.total("params") == sum(p.numel() for p in model.parameters())


def test_lstm_by_hand_and_a_packed_sequence():
    lstm = nn.LSTM(4, 6)
    # 5 steps x batch 2 x 4 gates x 6 hidden x (4 inputs + 6 hidden) = 2,400 MACs
    assert same_rows_everywhere(lstm, torch.randn(5, 2, 4)).core_macs == 5 * 2 * 24 * (4 + 6)
    packed = Lambda(lambda x: lstm(nn.utils.rnn.pack_padded_sequence(x, torch.tensor([5, 3])))[1][0])
    packed.lstm = lstm
    # lengths 5 and 3: 8 (step, sequence) pairs x 24 x 10 = 1,920 MACs; packing moves data only (its lengths must
    # be on the CPU, so this one runs there)
    assert count(packed, inputs=torch.randn(5, 2, 4), device="cpu", strict=True).core_macs == 8 * 24 * (4 + 6)


def test_lstm_training_step_matches_torch_counter():
    model = nn.Sequential(nn.LSTM(8, 16, batch_first=True), Lambda(lambda out: out[0][:, -1]), nn.Linear(16, 3))
    x = torch.randn(2, 5, 8, device="meta")
    model = model.to("meta")
    result = trace_training(model, x, targets_for(2))
    optimizer = make_optimizer(model)
    with FlopCounterMode(display=False) as mode:
        training_step(model, (x,), targets_for(2), optimizer)
    assert not result.unsupported
    assert core_train_macs(result) == mode.get_total_flops() // 2


# -- training a user model --------------------------------------------------------------------------------------


def test_tied_weights_get_their_grad_weight_in_each_owner():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.lm = nn.Embedding(50, 8), nn.Linear(8, 50, bias=False)
            self.lm.weight = self.emb.weight

        def forward(self, x):
            return self.lm(torch.tanh(self.emb(x))).flatten(0, 1)

    model, x = Tied(), torch.zeros(2, 3, dtype=torch.long)
    result = trace_training(model, x, targets_for(6, "cpu"), device="cpu")
    lm = result.table[result.table.name == "lm"].iloc[0]
    # 6 tokens x 8 x 50 each: forward, dX = dY W, dW = dY^T X
    assert (lm.forward_macs, lm.grad_input_macs, lm.grad_weight_macs) == (2400, 2400, 2400)
    assert core_train_macs(result) == torch_train_macs(model, (x,), 6)


def test_optimizer_state_made_directly_on_meta_equals_a_real_priming_step(monkeypatch):
    from cnncost.trace import step
    from cnncost.trace.memory import predict_memory
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).to("meta")
    x = torch.empty(2, 3, 8, 8, device="meta")
    for optimizer in ("sgd", "adamw"):
        made = trace_training(model, x, targets_for(2), optimizer).table
        made_memory = predict_memory(model, x, targets_for(2), optimizer).totals
        with monkeypatch.context() as m:
            m.setattr(step, "steady_state", lambda _: None)  # the real step on zero gradients
            assert trace_training(model, x, targets_for(2), optimizer).table.equals(made)
            assert predict_memory(model, x, targets_for(2), optimizer).totals == made_memory


def test_train_takes_input_shapes_and_int_tokens(capsys, user_file):
    status, out, _ = cli(capsys, "train", f"{user_file}:text", "--input", "2x8:int64", "-f", "json")
    assert status == 0
    data = json.loads(out)
    assert (data["input_shape"], data["batch"], data["unsupported"]) == ([2, 8], 2, {})
    from cnncost.trace.models import load
    model = load(f"{user_file}:text").build("cpu")
    ours = data["totals"]["core_train_macs"]
    assert ours == torch_train_macs(model, (torch.zeros(2, 8, dtype=torch.long),), 2)


def test_train_takes_a_factorys_keyword_inputs(capsys, user_file):
    status, out, _ = cli(capsys, "train", f"{user_file}:masked", "-f", "json")
    assert status == 0
    totals = json.loads(out)["totals"]
    # fc on 2 x 3 rows: 6 x 4 x 2 = 48 forward MACs, 48 for dW; the input needs no gradient: no dX
    assert (totals["core_forward_macs"], totals["core_grad_weight_macs"], totals["core_grad_input_macs"]) == (48, 48, 0)


def test_train_falls_back_to_the_cpu_with_a_notice(capsys, user_file):
    status, out, err = cli(capsys, "train", f"{user_file}:cpu_tensors", "--input", "3x4", "-f", "json")
    assert status == 0
    data = json.loads(out)
    assert data["device"] == "cpu" and "traced on the CPU instead" in err
    assert data["totals"]["core_forward_macs"] == 3 * 4 * 4  # 3 rows x 4 in x 4 out


def test_a_scalar_output_is_its_own_loss(capsys, user_file):
    status, out, _ = cli(capsys, "train", f"{user_file}:scalar", "--input", "3x4", "-f", "json")
    assert status == 0
    assert json.loads(out)["totals"]["core_grad_weight_macs"] == 3 * 4 * 4


def test_fit_searches_the_first_dim_of_input_shapes(capsys, user_file):
    status, out, _ = cli(capsys, "train", f"{user_file}:text", "--input", "2x8:int64", "--fit", "1GB", "-f", "json")
    assert status == 0 and json.loads(out)["fit"]["largest_batch"] > 2


def test_train_refuses_input_with_batch(capsys, user_file):
    status, _, err = cli(capsys, "train", f"{user_file}:text", "--input", "2x8:int64", "--batch", "4")
    assert status == 2 and err.count("\n") == 1 and err.startswith("cnncost: error: --input")


# -- verify ---------------------------------------------------------------------------------------------------


def test_verify_refuses_aux_on_a_model_without_auxiliary_heads(capsys):
    status, _, err = cli(capsys, "verify", "alexnet", "--aux", "--tools", "none")
    assert status == 2 and err.count("\n") == 1 and "alexnet has no auxiliary heads" in err


def test_verify_takes_inputs_and_explains_tools_run_on_the_cpu(capsys, tmp_path):
    path = tmp_path / "attend.py"
    path.write_text("import torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n\n"
                    "class Attend(nn.Module):\n"
                    "    def __init__(self):\n        super().__init__()\n        self.q = nn.Linear(8, 8)\n\n"
                    "    def forward(self, x, y):\n"
                    "        mask = torch.ones(4, 4, dtype=torch.bool).tril()  # on the CPU: no meta run\n"
                    "        q = self.q(x)\n"
                    "        return F.scaled_dot_product_attention(q, y, y, attn_mask=mask).sum(-1)\n\n\n"
                    "def attend():\n    return Attend()\n")
    status, out, _ = cli(capsys, "verify", f"{path}:attend", "--input", "2x4x8", "--input", "2x4x8",
                         "--tools", "torch,ptflops-aten", "-f", "json")
    assert status == 0
    model = json.loads(out)["models"][0]
    causes = {c["cause"] for c in model["causes"]}
    # torch decides whether a 2x4x8 query runs fused on the CPU: torch 2.4 decomposes 3-d queries into bmm's, which
    # torch's counter and ptflops's aten backend count; later releases fuse them, and those tools count nothing
    fused = cpu_attention_is_fused((2, 4, 8))
    assert model["errors"] == {} and ("fused CPU attention not counted" in causes) == fused
    assert "unexplained" not in causes


# -- more ops a new user's model runs ----------------------------------------------------------------------------


def test_bilinear_forward_and_its_gradients():
    model = nn.Bilinear(8, 6, 4)
    x1, x2 = torch.randn(2, 8), torch.randn(2, 6)
    row = same_rows_everywhere(model, x1, x2).table.iloc[0]
    # 2 rows x 4 out x 8 x 6 = 384 MACs, a bias add per output (8); 4 x 8 x 6 + 4 = 196 parameters
    assert (row.kind, row.category, row.macs, row.bias_adds, row.params) == ("bilinear", "linear", 384, 8, 196)
    train = trace_training(model, as_inputs((x1, x2), True), targets_for(2, "cpu"), input_grad=True, device="cpu")
    b = train.table.iloc[0]
    assert not train.unsupported
    assert (b.grad_weight_macs, b.grad_input_macs) == (384, 2 * 384)  # dA, and dX1 and dX2: a full contraction each


def test_cdist_affine_grid_and_fft_by_hand():
    x = torch.randn(3, 8)
    # 3 x 3 pairs x (3 ops x 8 features + 1 root) = 225
    assert same_rows_everywhere(Lambda(lambda a: torch.cdist(a, a)), x).total() == 9 * (3 * 8 + 1)
    theta = torch.randn(2, 2, 3)
    # 2 x 4 x 4 points, each 2 outputs x 3 terms = 192
    grid = Lambda(lambda t: F.affine_grid(t, [2, 1, 4, 4], align_corners=False))
    assert same_rows_everywhere(grid, theta).total() == 2 * 16 * 2 * 3
    signal = torch.randn(4, 64)
    # 4 transforms of 64 points x log2 64 = 6 stages = 1,536, forward (rfft) and back (irfft to 64 points)
    rfft = same_rows_everywhere(Lambda(lambda s: torch.fft.rfft(s)), signal)
    assert rfft.total() == 4 * 64 * 6
    round_trip = Lambda(lambda s: torch.fft.irfft(torch.fft.rfft(s), 64))
    assert same_rows_everywhere(round_trip, signal).total() == 2 * 4 * 64 * 6


def test_stft_window_and_antialiased_resize_have_formulas():
    wav = torch.randn(2, 400)
    spectrum = Lambda(lambda w: torch.stft(w, 32, 8, window=torch.hann_window(32), return_complex=True).abs())
    assert not count(spectrum, inputs=wav, device="cpu", strict=True).unsupported
    resize = Lambda(lambda x: F.interpolate(x, size=(4, 4), mode="bilinear", antialias=True))
    plain = Lambda(lambda x: F.interpolate(x, size=(4, 4), mode="bilinear"))
    image = torch.randn(1, 2, 8, 8)
    # costed by its mode's taps, as its backward: the same as without antialias
    assert same_rows_everywhere(resize, image).total() == same_rows_everywhere(plain, image).total()


@pytest.mark.parametrize("batch", [1, 2])
def test_batch_first_attention_is_explained_for_ptflops_aten_at_any_batch(tmp_path, batch):
    """A batch_first query of batch > 1 reaches the in-projection transposed: aten.linear runs as mm + add there."""
    from cnncost.verify import verify_model
    path = tmp_path / "mha.py"
    path.write_text("from torch import nn\n\n\ndef mha():\n    return Self()\n\n\nclass Self(nn.Module):\n"
                    "    def __init__(self):\n        super().__init__()\n"
                    "        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)\n\n"
                    "    def forward(self, x):\n        return self.attn(x, x, x, need_weights=False)[0]\n")
    v = verify_model(f"{path}:mha", tools=("torch", "ptflops-aten", "ptflops", "fvcore"),
               shapes=[((batch, 5, 16), "float32")])
    assert not v.errors and not [c for c in v.causes if c["cause"] == "unexplained"]
    # 4 projections of batch x 5 tokens x 16 x 16 + 2 products of 4 heads x 5 x 5 x 4 per sequence
    assert v.trace.core_macs == batch * (4 * 5 * 16 * 16 + 2 * 4 * 5 * 5 * 4)


def test_a_spatial_mean_is_a_global_pool_with_the_output_shape_of_the_mean():
    x = torch.randn(2, 3, 4, 4)
    dropped = same_rows_everywhere(Lambda(lambda t: t.mean((2, 3))), x).table.iloc[0]
    kept = same_rows_everywhere(Lambda(lambda t: t.mean((2, 3), keepdim=True)), x).table.iloc[0]
    assert (dropped.kind, dropped.out_shape, kept.out_shape) == ("adaptive_avgpool2d", "2x3", "2x3x1x1")
    assert dropped.macs == kept.macs == 2 * 3 * 4 * 4  # one add per input element


def test_a_transformer_text_classifier_is_explained_for_every_tool(user_file):
    """Embedding + nn.TransformerEncoder (batch_first, batch 2) on int64 tokens: no unexplained difference."""
    from cnncost.verify import verify_model
    v = verify_model(f"{user_file}:text", shapes=[((2, 8), "int64")])
    assert not v.errors and not v.trace.unsupported
    assert not [c for c in v.causes if c["cause"] == "unexplained"], v.causes
    assert ("ptflops", "stored activation not patched") in {(c["source"], c["cause"]) for c in v.causes}


def test_recurrent_layers_are_explained_for_fvcore_torch_and_ptflops_aten(tmp_path):
    """fvcore has no handle for aten::lstm/gru; torch's counter and ptflops's aten backend (on meta) see the mm's."""
    from cnncost.verify import verify_model
    path = tmp_path / "rnn.py"
    path.write_text("from torch import nn\n\n\nclass Tagger(nn.Module):\n    def __init__(self):\n"
                    "        super().__init__()\n        self.emb = nn.Embedding(50, 8)\n"
                    "        self.lstm = nn.LSTM(8, 16, batch_first=True, bidirectional=True)\n"
                    "        self.gru = nn.GRU(32, 8, batch_first=True)\n        self.fc = nn.Linear(8, 3)\n\n"
                    "    def forward(self, x):\n"
                    "        return self.fc(self.gru(self.lstm(self.emb(x))[0])[0][:, -1])\n\n\n"
                    "def tagger():\n    return Tagger()\n")
    v = verify_model(f"{path}:tagger", tools=("fvcore", "torch", "ptflops-aten"), shapes=[((2, 6), "int64")])
    assert not v.errors and not v.trace.unsupported
    assert not [c for c in v.causes if c["cause"] == "unexplained"], v.causes
