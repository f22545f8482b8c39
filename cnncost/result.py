"""One result type for every source (analytic spec, our tracer, fvcore, ptflops, torch): a per-layer table."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import pandas as pd

from cnncost.formulas import CATEGORIES, CORE, Cost, Shape, dtype_bytes, fmt_shape
from cnncost.specs.base import Layer, Spec

COLUMNS = ["name", "stage", "kind", "category", "in_shape", "out_shape", "kernel", "stride", "groups",
           "params", "buffers", "macs", "bias_adds", "activations", "bytes_read", "bytes_written"]
INT_COLUMNS = ["groups", "params", "buffers", "macs", "bias_adds", "activations", "bytes_read", "bytes_written"]
SUMMED = ["params", "buffers", "macs", "bias_adds", "activations", "bytes_read", "bytes_written"]
LEVELS = ("layer", "stage", "kind", "category")


def cost_row(name: str, stage: str, c: Cost, dtype: str = "fp32") -> dict:
    """A table row for one layer's cost."""
    return {"name": name, "stage": stage, "kind": c.kind, "category": c.category,
            "in_shape": fmt_shape(c.in_shape), "out_shape": fmt_shape(c.out_shape), "kernel": c.kernel,
            "stride": c.stride, "groups": c.groups, "params": c.params, "buffers": c.buffers, "macs": c.macs,
            "bias_adds": c.bias_adds, "activations": c.activations, "bytes_read": c.bytes_read(dtype),
            "bytes_written": c.bytes_written(dtype)}


def expand(layers: Iterable[Layer]) -> Iterable[Layer]:
    """Composite layers (squeeze-excitation) as their parts, named like torchvision's submodules."""
    for layer in layers:
        if not layer.cost.parts:
            yield layer
            continue
        for suffix, part in layer.cost.parts:
            yield Layer(f"{layer.name}.{suffix}" if suffix else layer.name, layer.stage, part)


def frame(rows: Iterable[dict], extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """A layer table with the standard columns (and `extra` ones, as a traced table's module and op), integers
    kept exact."""
    df = pd.DataFrame(list(rows), columns=[*COLUMNS, *extra])
    df[INT_COLUMNS] = df[INT_COLUMNS].fillna(0).astype("int64")
    return df.fillna("")


@dataclass
class Result:
    """Per-layer costs of one model from one source; every total is the sum of the rows."""

    model: str
    source: str
    input_shape: Shape
    table: pd.DataFrame
    dtype: str = "fp32"
    convention: str = "MACs"
    unsupported: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    input_shapes: list[Shape] = field(default_factory=list)  # every input tensor's shape (input_shape: the first)
    device: str = ""  # where a traced forward ran: meta, or cpu (asked for, or the fallback)
    assumptions: dict = field(default_factory=dict)  # counts the cost depends on (a detector's detections)
    not_called: list[str] = field(default_factory=list)  # modules a tool's forward never called (a fused path)

    @classmethod
    def from_spec(cls, spec: Spec, dtype: str = "fp32") -> "Result":
        """The analytic result of a spec."""
        dtype_bytes(dtype)
        rows = (cost_row(l.name, l.stage, l.cost, dtype) for l in expand(spec.layers))
        return cls(spec.model, "analytic", spec.input_shape, frame(rows), dtype)

    def total(self, column: str = "macs", categories: Iterable[str] | None = None) -> int:
        """Sum of a column over all rows, or over rows of some categories."""
        rows = self.table if categories is None else self.table[self.table.category.isin(list(categories))]
        return int(rows[column].sum())

    @property
    def core_macs(self) -> int:
        """Conv + linear MACs: the torchvision `_ops` and papers' convention."""
        return self.total("macs", CORE)

    def by_category(self) -> dict[str, int]:
        """MACs per op category, every category present (zeros included)."""
        sums = self.table.groupby("category")["macs"].sum()
        return {c: int(sums.get(c, 0)) for c in CATEGORIES}

    def by(self, level: str = "layer") -> pd.DataFrame:
        """The table at one level: layer (as is), stage, kind or category, with sums and intensity (FLOP/byte)."""
        if level not in LEVELS:
            from cnncost.errors import CnnCostError
            raise CnnCostError(f"unknown level {level!r}; choose one of {', '.join(LEVELS)}")
        if level == "layer":
            table = self.table.copy()
        else:
            table = self.table.groupby(level, sort=False)[SUMMED].sum().reset_index()
            table.insert(1, "layers", self.table.groupby(level, sort=False).size().values)
        moved = table.bytes_read + table.bytes_written
        table["intensity_flop_per_byte"] = (2 * table.macs / moved.where(moved > 0)).fillna(0.0).round(3)
        return table

    def totals(self) -> dict[str, int]:
        """Whole-model sums: params, MACs (all and core), bias adds, activations, bytes."""
        out = {c: self.total(c) for c in SUMMED}
        out["core_macs"] = self.core_macs
        return out

    def document(self, rows: list[dict], totals: dict, unit: str, by: str, traced: bool = True) -> dict:
        """The JSON of `trace` and `show`: the model, where its counts come from, its input, the rows and totals in
        a unit; a traced count also says what every input was, where it ran and what it could not count."""
        data = {"model": self.model, "source": self.source, "input_shape": list(self.input_shape)}
        if traced:
            data.update(input_shapes=[list(s) for s in self.input_shapes], device=self.device)
        data.update(dtype=self.dtype, unit=unit, by=by, rows=rows, totals=totals)
        if traced:
            data.update(unsupported=self.unsupported, notes=self.notes)
        if self.assumptions:
            data["assumptions"] = self.assumptions
        return data
