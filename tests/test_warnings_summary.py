"""A user model's warnings as one line on stderr; a hint for a forward that needs non-tensor inputs."""
import warnings

import pytest
import torch
from torch import nn

from cnncost import warnings_summary
from cnncost.warnings_summary import collect, input_hint, report, summarised, summarising


def test_warnings_become_one_line_per_model(capsys):
    with summarised("net.py:make"):
        for _ in range(2):
            warnings.warn("Lazy modules are a new feature\nunder heavy development", UserWarning)
        warnings.warn("old api", DeprecationWarning)
        torch.nn.functional.interpolate(torch.zeros(1, 1, 2, 2), scale_factor=2.0, mode="bilinear")  # no warning
    err = capsys.readouterr().err
    assert err == ('cnncost: note: net.py:make raised 3 warnings: UserWarning x2 "Lazy modules are a new feature"; '
                   'DeprecationWarning "old api"\n')


def test_collected_across_many_forwards_and_reported_once(capsys):
    with summarising():
        for _ in range(50):  # a timed forward runs many times
            with collect("net.py:make"):
                warnings.warn("slow path", UserWarning)
        assert capsys.readouterr().err == ""  # nothing while it runs
        assert report() == ['cnncost: note: net.py:make raised 50 warnings: UserWarning x50 "slow path"']
        assert report() == [] and warnings_summary.SEEN == {}


def test_outside_the_command_line_warnings_are_left_to_python():
    """A library call keeps nothing back, so nothing from one call is reported after another."""
    with pytest.warns(UserWarning, match="slow path"):
        with collect("net.py:make"):
            warnings.warn("slow path", UserWarning)
    assert warnings_summary.SEEN == {}


def test_no_warnings_no_line(capsys):
    with summarised("quiet.py:make"):
        pass
    assert capsys.readouterr().err == ""


class DictInput(nn.Module):
    def forward(self, batch: dict) -> torch.Tensor:
        return batch["image"].mean()


class Untyped(nn.Module):
    def forward(self, batch):
        return batch["image"].mean()


def test_a_forward_taking_a_dict_gets_a_hint_to_return_example_inputs():
    hint = input_hint(DictInput())
    assert "its forward takes batch: dict" in hint and "return model, (example_batch,)" in hint
    assert input_hint(nn.Conv2d(3, 8, 3)) == ""  # forward(input: Tensor)
    assert input_hint(nn.Sequential(nn.ReLU())) == ""  # forward(input), an image works
    with pytest.raises(IndexError) as failed, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Untyped()(torch.zeros(1, 3, 8, 8))  # a tensor indexed with a string
    assert "its forward takes batch," in input_hint(Untyped(), failed.value)
    assert input_hint(Untyped(), ValueError("shapes do not match")) == ""
