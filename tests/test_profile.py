"""cnncost profile: measured time joined to the rows trace prints; the join checked on events made by hand, a real
CPU run's schema and coverage, and bad input as one line. No timing is asserted: only structure."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from cnncost.cli import run
from cnncost.speed.profile import BETWEEN, UNATTRIBUTED, join, top_level


def event(name: str, start: float, cpu_ms: float, children=(), cuda_ms: float = 0.0):
    """A stand-in for torch.profiler's FunctionEvent: name, start, inclusive times (µs), children, parent."""
    e = SimpleNamespace(name=name, time_range=SimpleNamespace(start=start), cpu_time_total=cpu_ms * 1e3,
                        device_time_total=cuda_ms * 1e3, cpu_children=list(children), cpu_parent=None)
    for child in children:
        child.cpu_parent = e
    return e


def test_join_books_each_counted_op_and_looks_inside_composites():
    ops = [["aten::convolution", 0], ["aten::t", 1], ["aten::addmm", 1], ["aten::relu_", 2]]
    roots = [event("aten::conv2d", 0, 5.0, [event("aten::convolution", 0.1, 4.5)]),   # composite around the op
             event("aten::linear", 10, 3.0, [event("aten::t", 10.1, 0.2), event("aten::addmm", 10.5, 2.5)]),
             event("aten::relu_", 20, 1.0),
             event("aten::zeros", 30, 0.7)]  # an op the count never saw
    times, found = join(top_level(roots), ops)
    # conv2d's own 0.5 ms goes with the convolution inside it; linear's own 0.3 ms with its first op's row
    assert times[0] == pytest.approx(5.0) and times[1] == pytest.approx(3.0) and times[2] == pytest.approx(1.0)
    assert times[None] == pytest.approx(0.7) and found == 4
    assert sum(times.values()) == pytest.approx(5.0 + 3.0 + 1.0 + 0.7)  # nothing dropped


def test_join_skips_ops_with_no_event_and_uses_kernel_times_on_a_gpu():
    ops = [["aten::detach", 0], ["aten::convolution", 0], ["aten::add_", 1]]
    roots = [event("aten::convolution", 0, 0.05, cuda_ms=2.0), event("aten::add_", 1, 0.01, cuda_ms=0.5)]
    times, found = join(top_level(roots), ops, cuda=True)
    assert times == {0: pytest.approx(2.0), 1: pytest.approx(0.5)} and found == 2


@pytest.fixture()
def net(tmp_path):
    path = tmp_path / "net.py"
    path.write_text("from torch import nn\nimport torch\n"
                    "class Net(nn.Module):\n"
                    "    def __init__(self):\n"
                    "        super().__init__()\n"
                    "        self.conv = nn.Conv2d(3, 8, 3, padding=1)\n"
                    "        self.fc = nn.Linear(8, 4)\n"
                    "    def forward(self, x):\n"
                    "        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))\n"
                    "def make():\n    return Net()\n")
    return f"{path}:make"


@pytest.mark.parametrize("train", [False, True])
def test_a_real_cpu_run_has_the_trace_rows_with_their_times(capsys, net, train):
    argv = ["profile", net, "--size", "16", "--batch", "2", "--repeats", "1", "--warmup", "0", "-f", "json"]
    assert run(argv + (["--train"] if train else [])) == 0
    data = json.loads(capsys.readouterr().out)
    names = [r["name"] for r in data["rows"]]
    assert names[-2:] == [UNATTRIBUTED, BETWEEN]  # never dropped: named rows
    between = data["rows"][-1]["time_ms"]
    assert between > 0  # Python runs between the ops of an eager forward
    assert {"conv", "fc"} <= set(names)
    core = [r for r in data["rows"] if r["kind"] in ("conv2d", "linear")]
    assert all(r["time_ms"] > 0 for r in core)  # every conv and linear row has its measured time
    totals = data["totals"]
    assert totals["profiled_ms"] == pytest.approx(sum(r["time_ms"] for r in data["rows"]), abs=1e-3)
    assert totals["coverage"] == pytest.approx(totals["profiled_ms"] / totals["latency_ms"], rel=1e-3)
    assert data["threads"] == torch.get_num_threads() and data["batch"] == 2


@pytest.mark.parametrize("argv, message", [
    (["profile", "resnet18", "--device", "cuda"], "CUDA is not available"),
    (["profile", "resnet18", "--device", "tpu"], "--device must be cpu, cuda or cuda:N"),
    (["profile", "resnet18", "--dtype", "int8"], "--dtype must be one of"),
    (["profile", "resnet18", "--repeats", "0"], "--repeats must be positive"),
    (["profile", "nosuchmodel"], "unknown model"),
])
def test_bad_input_is_one_line(capsys, argv, message):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("CUDA is here")
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
