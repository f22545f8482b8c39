"""A forward count's rows as a Result table: one row per op call, parameters per unique tensor,
parameters no op read as '(unused)' rows, the notes a reader needs, and roll-ups by module depth."""
from __future__ import annotations

import pandas as pd
import torch

from cnncost.formulas import Cost, fmt_shape
from cnncost.result import SUMMED, Result, cost_row, frame
from cnncost.trace.kinds import root_name, stage_of
from cnncost.trace.ledger import ParamLedger
from cnncost.trace.sources import Inputs


def merge(name: str, costs: list[Cost], dtype: str) -> dict:
    """One table row from the costs of one or more ops of the same kind in one module call."""
    rows = [cost_row(name, stage_of(name), c, dtype) for c in costs]
    row = rows[0]
    for other in rows[1:]:
        row.update({k: row[k] + other[k] for k in SUMMED})
    return row


def table_rows(rows: list[dict], dtype: str) -> list[dict]:
    """The counter's rows, parameters counted per unique tensor, real output shapes."""
    out = []
    for acc in rows:
        row = merge(acc["name"], acc["costs"], dtype)
        row.update(params=acc["params"], buffers=acc["buffers"], out_shape=fmt_shape(acc["out_shape"]),
                   module=acc["module"], op=" ".join(dict.fromkeys(acc["ops"])))
        out.append(row)
    return out


def unused_rows(model: torch.nn.Module, ledger: ParamLedger) -> list[dict]:
    """Parameters no op read (auxiliary heads in eval mode, dead layers): one row per owning module."""
    owners: dict[str, int] = {}
    for pname, p in model.named_parameters():
        if id(p) not in ledger.seen:
            owner = pname.rpartition(".")[0]
            owners[owner] = owners.get(owner, 0) + p.numel()
    modules = dict(model.named_modules())
    return [{"name": root_name(owner), "stage": stage_of(owner), "kind": "(unused)", "category": "other",
             "in_shape": "", "out_shape": "", "kernel": "", "stride": "", "params": n,
             "module": type(modules[owner]).__name__, "op": ""} for owner, n in owners.items()]


def fmt_ops(ops: dict[str, int]) -> str:
    """{'aten.sub': 2} as 'aten.sub x2'."""
    return ", ".join(f"{op} x{n}" for op, n in ops.items())


def notes(unsupported: dict[str, int], table: pd.DataFrame) -> list[str]:
    """What a reader should know about this count: ops with no formula, parameters never used."""
    out = []
    if unsupported:
        out.append(f"ops with no formula, counted as 0 and listed as rows: {fmt_ops(unsupported)}")
    unused = int(table.loc[table.kind == "(unused)", "params"].sum())
    if unused:
        out.append(f"{unused:,} parameters are never used in the forward pass (rows of kind '(unused)')")
    return out


def result_of(model: torch.nn.Module, rows: list[dict], ledger: ParamLedger, unsupported: dict[str, int], inputs: Inputs,
              name: str, source: str, dtype: str) -> Result:
    """The Result of a finished count: its rows, the unused parameters, where it ran and what to note."""
    table = frame(table_rows(rows, dtype) + unused_rows(model, ledger), extra=("module", "op"))
    shapes = inputs.shapes()
    device = next((t.device.type for t in inputs.tensors()), None) or next(
        (t.device.type for t in model.parameters()), "cpu")
    result = Result(name, source, shapes[0] if shapes else (), table, dtype, "MACs", dict(unsupported),
                    input_shapes=shapes, device=device)
    result.notes += notes(unsupported, table)
    return result


def rollup(result: Result, depth: int = 1) -> pd.DataFrame:
    """Totals per module at a depth of the module tree (1 = top-level children); the root's own ops as (model)."""
    names = result.table.name.map(lambda n: n if n == "(model)" else ".".join(n.split(".")[:depth]))
    summed = result.table.groupby(names, sort=False)[SUMMED].sum().reset_index()
    summed.insert(1, "rows", result.table.groupby(names, sort=False).size().values)
    return summed
