"""Inputs that are not one NCHW image: several tensors, integer token ids, a factory's own example inputs,
keyword arguments; tied weights counted once through every door; trace options that apply or are refused."""
import json
import sys

import pytest
import torch
from torch import nn

from cnncost.cli import run
from cnncost.errors import CnnCostError
from cnncost.trace import count
from cnncost.trace.models import load
from cnncost.trace.sources import parse_input
from cnncost.verify import verify_model

USER_MODELS = '''
import torch
from torch import nn

class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.proj = nn.Linear(4, 8)
        self.head = nn.Linear(8, 3, bias=False)

    def forward(self, x, ids):
        return self.head(self.proj(x) + self.embed(ids).mean(1))

class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.out = nn.Linear(8, 50, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, ids):
        return self.out(self.embed(ids))

class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x[x.sum(1).nonzero()[:, 0]])

def two():
    return TwoInputs()

def with_inputs():
    return TwoInputs(), (torch.zeros(2, 4), torch.zeros(2, 10, dtype=torch.long))

def tied():
    return Tied(), torch.zeros(1, 10, dtype=torch.long)

def data_dependent():
    return DataDependent(), torch.ones(3, 4)

class Keyed(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 8)
        self.b = nn.Conv1d(2, 4, 3)

    def forward(self, batch: dict):
        return self.a(batch["x"]).sum() + self.b(batch["s"]).sum()

def keyed():
    return Keyed(), {"batch": {"x": torch.randn(2, 16), "s": torch.randn(2, 2, 20)}}

class Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)

    def forward(self, x):
        return self.conv(x)

def image_example():
    return Conv(), torch.randn(2, 3, 8, 8)
'''

# TwoInputs on x (2, 4) and ids (2, 10): proj 2 * 4 * 8 = 64 MACs, head 2 * 8 * 3 = 48 MACs -> 112 linear MACs;
# parameters: embed 50 * 8 = 400, proj 4 * 8 + 8 = 40, head 8 * 3 = 24 -> 464.
TWO_INPUTS_MACS, TWO_INPUTS_PARAMS = 2 * 4 * 8 + 2 * 8 * 3, 50 * 8 + 4 * 8 + 8 + 8 * 3
# Tied on ids (1, 10): out 10 * 8 * 50 = 4,000 MACs; one 50 x 8 weight shared by embed and out: 400 parameters.
TIED_MACS, TIED_PARAMS = 10 * 8 * 50, 50 * 8


def cli(capsys, *argv):
    status = run([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def cli_json(capsys, *argv):
    status, out, err = cli(capsys, *argv, "-f", "json")
    assert status == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    path = tmp_path_factory.mktemp("inputs") / "multi.py"
    path.write_text(USER_MODELS)
    return path


@pytest.mark.parametrize("text, expected", [
    ("1x3x224x224", ((1, 3, 224, 224), "float32")),
    ("1x10:int64", ((1, 10), "int64")),
    ("2X7:BF16", ((2, 7), "bf16")),
    ("5", ((5,), "float32")),
])
def test_input_shapes_parse(text, expected):
    assert parse_input(text) == expected


@pytest.mark.parametrize("text, message", [
    ("1xax3", "must be SHAPE"), ("", "must be SHAPE"), ("1x0x3", "positive"), ("1x3:float99", "unknown input dtype"),
])
def test_bad_input_shapes_are_refused(text, message):
    with pytest.raises(CnnCostError, match=message):
        parse_input(text)


def test_several_inputs_on_the_command_line(capsys, nets):
    data = cli_json(capsys, "trace", f"{nets}:two", "--input", "2x4", "--input", "2x10:int64")
    assert data["input_shapes"] == [[2, 4], [2, 10]] and data["input_shape"] == [2, 4]
    assert data["totals"]["core_macs"] == TWO_INPUTS_MACS and data["totals"]["params"] == TWO_INPUTS_PARAMS
    assert data["device"] == "meta"


def test_title_names_every_input(capsys, nets):
    status, out, _ = cli(capsys, "trace", f"{nets}:two", "--input", "2x4", "--input", "2x10:int64", "-f", "md")
    assert status == 0 and "on 2x4, 2x10, traced on meta" in out.splitlines()[0]


def test_factory_returns_its_example_inputs(capsys, nets):
    data = cli_json(capsys, "trace", f"{nets}:with_inputs")
    assert data["input_shapes"] == [[2, 4], [2, 10]]
    assert data["totals"]["core_macs"] == TWO_INPUTS_MACS and data["totals"]["params"] == TWO_INPUTS_PARAMS


def test_api_takes_a_tensor_a_tuple_or_a_dict():
    from_tuple = count(TwoInputsLike(), inputs=(torch.zeros(2, 4), torch.zeros(2, 10, dtype=torch.long)))
    from_dict = count(TwoInputsLike(), inputs={"x": torch.zeros(2, 4), "ids": torch.zeros(2, 10, dtype=torch.long)})
    assert from_tuple.core_macs == from_dict.core_macs == TWO_INPUTS_MACS
    assert from_dict.input_shapes == [(2, 4), (2, 10)]
    one = count(nn.Linear(4, 8), inputs=torch.zeros(5, 4))  # 5 * 4 * 8 = 160
    assert one.core_macs == 5 * 4 * 8 and one.input_shape == (5, 4)


class TwoInputsLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed, self.proj, self.head = nn.Embedding(50, 8), nn.Linear(4, 8), nn.Linear(8, 3, bias=False)

    def forward(self, x, ids):
        return self.head(self.proj(x) + self.embed(ids).mean(1))


class TiedLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed, self.out = nn.Embedding(50, 8), nn.Linear(8, 50, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, ids):
        return self.out(self.embed(ids))


class PicksRows(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x[x.sum(1).nonzero()[:, 0]])


def test_count_falls_back_to_where_the_module_lives():
    result = count(PicksRows(), inputs=torch.ones(3, 4))  # nonzero has no meta kernel
    assert result.device == "cpu" and "counted on cpu instead" in result.notes[0]
    assert result.core_macs == 3 * 4 * 2  # all 3 rows are non-zero: 3 * 4 * 2 = 24


def test_count_inputs_cannot_be_combined_with_size():
    with pytest.raises(CnnCostError, match="cannot be combined"):
        count(nn.Linear(4, 2), inputs=torch.zeros(1, 4), size=32)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_tied_weights_count_once_through_count(device):
    result = count(TiedLike(), inputs=torch.zeros(1, 10, dtype=torch.long), device=device)
    assert result.total("params") == TIED_PARAMS and result.core_macs == TIED_MACS


def test_tied_weights_count_once_through_the_cli_and_verify(capsys, nets):
    data = cli_json(capsys, "trace", f"{nets}:tied")
    assert data["totals"]["params"] == TIED_PARAMS and data["totals"]["core_macs"] == TIED_MACS
    cpu = cli_json(capsys, "trace", f"{nets}:tied", "--device", "cpu")
    assert cpu["totals"]["params"] == TIED_PARAMS
    assert verify_model(f"{nets}:tied", tools=()).trace.total("params") == TIED_PARAMS


def test_cpu_fallback_is_named_in_title_and_json(capsys, nets):
    data = cli_json(capsys, "trace", f"{nets}:data_dependent")
    assert data["device"] == "cpu"
    assert data["totals"]["core_macs"] == 3 * 4 * 2  # all 3 rows are non-zero: 3 * 4 * 2 = 24
    _, out, err = cli(capsys, "trace", f"{nets}:data_dependent", "-f", "md")
    assert "traced on cpu" in out and "traced on meta" not in out and "counted on the CPU instead" in err


@pytest.mark.parametrize("argv, message", [
    (["trace", "resnet18", "--input", "1x3x64x64", "--size", "32"], "cannot be combined with --size"),
    (["trace", "resnet18", "--input", "1x3x64x64", "--batch", "2"], "cannot be combined with --batch"),
    (["trace", "resnet18", "--channels", "1"], "--channels applies only to FILE.py:FACTORY"),
    (["trace", "mobilenet_v2", "--aux"], "mobilenet_v2 has no auxiliary heads"),
    (["trace", "resnet18", "--device", "cuda", "--depth", "0"], "--device must be meta or cpu, got 'cuda'$"),
    (["trace", "resnet18", "--depth", "0"], "^cnncost: error: --depth must be at least 1, got 0$"),
    (["trace", "resnet18", "--by", "stage"], "use --by module"),
    (["trace", "resnet18", "--depth", "2"], "--depth applies only to --by module"),
    (["trace", "timm:no_such_net_at_all"], "unknown timm model"),
])
def test_trace_options_apply_or_are_refused(capsys, argv, message):
    import re
    status, out, err = cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert status == 2 and out == "" and len(lines) == 1 and lines[0].startswith("cnncost: error: ")
    assert re.search(message, lines[0]), lines[0]


def test_input_replaces_the_default_image(capsys):
    data = cli_json(capsys, "trace", "resnet18", "--input", "2x3x64x64")
    assert data["input_shapes"] == [[2, 3, 64, 64]]
    small = count("resnet18", inputs=torch.zeros(2, 3, 64, 64))
    assert data["totals"]["core_macs"] == small.core_macs


def test_aux_heads_as_torchvision_metadata_counts_them():
    assert load("inception_v3").aux_heads and load("fcn_resnet50").aux_heads
    with_aux, without = count("fcn_resnet50", size=64), count("fcn_resnet50", size=64, aux=False)
    assert with_aux.total("params") > without.total("params") and with_aux.core_macs > without.core_macs


# -- timm (optional extra) -------------------------------------------------------------------------------------


def test_timm_missing_is_one_line(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    status, _, err = cli(capsys, "trace", "timm:resnet18")
    assert status == 2 and err.strip() == "cnncost: error: timm is not installed; pip install 'cnncost[timm]'"


def test_a_fallback_that_cannot_fit_in_memory_is_refused(capsys):
    """3 x 99,999,999^2 fp32 elements = 1.2e17 bytes: the CPU fallback is refused before it allocates."""
    from cnncost.cli import run
    assert run(["trace", "resnet18", "--input", "1x3x99999999x99999999"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "GB for the inputs and weights alone" in err[0]


def test_inputs_given_to_count_win_over_a_factorys_example(tmp_path):
    """A factory returning (model, example) at batch 1, counted with inputs= at batch 4: Linear 8->3 is 4*8*3 = 96."""
    (tmp_path / "pair.py").write_text("import torch\n\ndef make():\n"
                                      "    return torch.nn.Linear(8, 3, bias=False), torch.zeros(1, 8)\n")
    result = count(f"{tmp_path / 'pair.py'}:make", inputs=torch.zeros(4, 8))
    assert result.core_macs == 4 * 8 * 3


# -- the user's input wins over a factory's example inputs, or the run is refused in one line ----------------------
# Keyed on x (N, 16), s (N, 2, 20): a = N * 16 * 8 MACs; b = N * 4 * 18 (outputs) * 2 * 3 (taps) MACs.


def keyed_macs(n: int) -> int:
    return n * 16 * 8 + n * 4 * 18 * 2 * 3


def test_batch_rebatches_a_factory_example(capsys, nets):
    data = cli_json(capsys, "trace", f"{nets}:keyed", "--batch", "5")
    assert data["input_shapes"] == [[5, 16], [5, 2, 20]] and data["totals"]["core_macs"] == keyed_macs(5)
    own = cli_json(capsys, "trace", f"{nets}:keyed")  # no --batch: the example's own batch, 2
    assert own["input_shapes"] == [[2, 16], [2, 2, 20]] and own["totals"]["core_macs"] == keyed_macs(2)


def test_train_batch_wins_over_a_factory_example(capsys, nets):
    data = cli_json(capsys, "train", f"{nets}:image_example", "--batch", "8")
    # conv 8 * 4 * 8 * 8 outputs * 3 * 3 * 3 taps = 55,296 forward MACs
    assert data["batch"] == 8 and data["input_shape"] == [8, 3, 8, 8]
    assert data["totals"]["core_forward_macs"] == 8 * 4 * 8 * 8 * 27


def test_input_replaces_a_factory_example_keeping_its_keys(capsys, nets):
    data = cli_json(capsys, "trace", f"{nets}:keyed", "--input", "3x16", "--input", "3x2x20")
    assert data["input_shapes"] == [[3, 16], [3, 2, 20]] and data["totals"]["core_macs"] == keyed_macs(3)
    status, _, err = cli(capsys, "trace", f"{nets}:keyed", "--input", "3x16")
    assert status == 2 and "--input gives 1 tensor(s), but its example inputs hold 2" in err


def test_size_resizes_one_image_example_and_is_refused_otherwise(capsys, nets):
    data = cli_json(capsys, "trace", f"{nets}:image_example", "--size", "16")
    assert data["input_shapes"] == [[2, 3, 16, 16]] and data["totals"]["core_macs"] == 2 * 4 * 16 * 16 * 27
    status, _, err = cli(capsys, "trace", f"{nets}:keyed", "--size", "64")
    assert status == 2 and err.count("\n") == 1 and "--size applies to one image input" in err
    assert "--input SHAPE" in err  # what can be given instead


def test_fit_searches_a_factory_example(capsys, nets):
    data = cli_json(capsys, "train", f"{nets}:keyed", "--fit", "1GB")
    assert data["fit"]["largest_batch"] > 1000  # a model of a few KB: a large batch fits in 1 GB


@pytest.mark.parametrize("command", ["trace", "train"])
def test_channels_zero_is_refused(capsys, nets, command):
    status, _, err = cli(capsys, command, f"{nets}:two", "--channels", "0")
    assert status == 2 and "--channels must be positive, got 0" in err
