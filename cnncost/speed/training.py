"""A training step as rows predict can time: the forward rows, a backward row for each, and the optimizer's update.

The backward MACs of each module are the traced ones (`cnncost train`: grad-input + grad-weight + recomputed
forward), shared among the module's forward rows in proportion to their MACs; a backward row keeps its forward
row's op class and moves twice its bytes (it reads the output gradient and what the forward saved, and writes the
input gradient and, for a layer with weights, the weight gradient). The optimizer's row is memory-bound: SGD with
momentum reads weight, gradient and momentum and writes weight and momentum, 5 x 4 bytes per fp32 parameter.
"""
from __future__ import annotations

import pandas as pd

SGD_BYTES_PER_PARAM = 5 * 4  # read w, g, m; write w, m (fp32 master weights)
BACKWARD_COLUMNS = ("grad_input_macs", "grad_weight_macs", "recompute_macs")


def step_table(forward: pd.DataFrame, train: pd.DataFrame) -> pd.DataFrame:
    """Forward rows, then their backward rows in reverse order, then one optimizer row (a Result-like table)."""
    backward_macs = train.groupby("name")[list(BACKWARD_COLUMNS)].sum().sum(axis=1)
    forward_macs = forward.groupby("name").macs.sum()
    rows = []
    for r in reversed(forward.to_dict("records")):
        total = forward_macs.get(r["name"], 0)
        macs = backward_macs.get(r["name"], 0)
        share = r["macs"] / total if total else 1 / max(int((forward.name == r["name"]).sum()), 1)
        rows.append({**r, "name": f"{r['name']} (backward)", "macs": int(macs * share), "bias_adds": 0,
                     "bytes_read": 2 * r["bytes_read"], "bytes_written": 2 * r["bytes_written"]})
    params = int(train.params.sum())
    optimizer = {c: ("" if forward[c].dtype == object else 0) for c in forward.columns}
    optimizer.update({"name": "(optimizer)", "kind": "optimizer", "category": "elementwise",
                      "macs": int(train.optimizer_macs.sum()), "bytes_read": SGD_BYTES_PER_PARAM * params * 3 // 5,
                      "bytes_written": SGD_BYTES_PER_PARAM * params * 2 // 5, "groups": 1})
    return pd.concat([forward, pd.DataFrame(rows), pd.DataFrame([optimizer])], ignore_index=True)


def traced_step(model, batch: int, size: int | None, dtype: str) -> pd.DataFrame:
    """The training step's MACs per op call (`cnncost train`) of a model (a name or a ModelSource), SGD, on the
    meta device."""
    from cnncost.trace.models import load
    from cnncost.trace.train import train_source
    return train_source(load(model) if isinstance(model, str) else model, batch, size, "sgd", dtype).table
