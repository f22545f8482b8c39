"""Architectures as data: named layers emitted by short builders from the papers' tables."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from cnncost.errors import CnnCostError
from cnncost.formulas import Cost, Shape, cost, fmt_shape


_MEMO: dict[tuple, Cost] = {}
MEMO_SIZE = 1 << 16


def layer_cost(kind: str, in_shape: Shape, hyper: dict) -> Cost:
    """cost() of one layer, memoized when its arguments are hashable: repeated blocks are computed once."""
    try:
        key = (kind, in_shape, *hyper.items())
        c = _MEMO.get(key)
    except TypeError:  # an unhashable argument, e.g. a list of shapes
        return cost(kind, in_shape, **hyper)
    if c is None:
        if len(_MEMO) >= MEMO_SIZE:
            _MEMO.clear()
        c = _MEMO[key] = cost(kind, in_shape, **hyper)
    return c


class Layer(NamedTuple):
    """One layer of a spec: its torchvision-style module name, the stage it belongs to, its cost."""

    name: str
    stage: str
    cost: Cost


@dataclass
class Spec:
    """A whole network as a list of layers, at one input shape."""

    model: str
    input_shape: Shape
    layers: list[Layer] = field(default_factory=list)


class Builder:
    """Emits named layers while tracking the running activation shape.

    ``b.add(name, kind, **hyper)`` applies a layer to the current shape and makes its output current;
    pass ``x=shape`` to apply it to another tensor (a branch) without touching the current shape.
    """

    def __init__(self, model: str, input_shape: Shape):
        self.spec = Spec(model, tuple(input_shape))
        self.shape: Shape = tuple(input_shape)
        self.stage = ""

    def add(self, name: str, kind: str, x: Shape | None = None, **hyper) -> Shape:
        """Append layer `name` of `kind` applied to x (default: the current shape) and return its output shape."""
        in_shape = self.shape if x is None else x
        try:
            c = layer_cost(kind, in_shape, hyper)
        except CnnCostError as e:
            raise CnnCostError(f"{self.spec.model}: layer {name} ({kind} on {fmt_shape(in_shape)}): {e}") from None
        self.spec.layers.append(Layer(name, self.stage, c))
        if x is None:
            self.shape = c.out_shape
        return c.out_shape

    def conv_bn_act(self, prefix: str, out_channels: int, kernel, stride=1, padding=None, groups=1,
                    act: str | None = "relu", names=("0", "1", "2"), x: Shape | None = None, **conv) -> Shape:
        """conv (no bias) -> batch norm -> activation, named prefix.0/.1/.2 (torchvision's Conv2dNormActivation)."""
        padding = (kernel - 1) // 2 if padding is None else padding
        join = (lambda n: f"{prefix}.{n}") if prefix else (lambda n: n)
        y = self.add(join(names[0]), "conv2d", x, out_channels=out_channels, kernel=kernel, stride=stride,
                     padding=padding, groups=groups, **conv)
        y = self.add(join(names[1]), "batchnorm2d", y if x is not None else None)
        if act:
            y = self.add(join(names[2]), act, y if x is not None else None)
        return y
