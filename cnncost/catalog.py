"""The model catalog: list the registered specs, and compare models side by side, stage by stage (no torch)."""
from __future__ import annotations

import re
from collections import Counter
from typing import NamedTuple, Sequence

import pandas as pd

from cnncost.errors import CnnCostError
from cnncost.formulas import CORE
from cnncost.output import in_unit
from cnncost.result import Result, expand
from cnncost.specs import ALIASES, MODELS, Spec, build, names, resolve
from cnncost.units import UNITS, Unit

FAMILIES = ("alexnet", "vgg", "googlenet", "resnet", "resnext", "densenet", "efficientnet")
BRANCH = re.compile(r"^(.*?)\.branch(\d+)\b")
BLOCK = re.compile(r"^(layer\d+\.\d+|features\.denseblock\d+\.denselayer\d+|features\.\d+\.\d+)\.")


class Comparison(NamedTuple):
    """Models side by side: one row of totals per model, and one row per stage."""

    totals: pd.DataFrame
    stages: pd.DataFrame


def spec_totals(spec: Spec) -> dict[str, int]:
    """Parameters, core (conv + linear) MACs and all MACs of a spec, summed without pandas (fast)."""
    costs = [layer.cost for layer in expand(spec.layers)]
    return {"params": sum(c.params for c in costs), "core_macs": sum(c.macs for c in costs if c.category in CORE),
            "macs": sum(c.macs for c in costs)}


def registered(name: str):
    """The registry entry of a name or alias, or None (then the tracer may still know the model)."""
    try:
        return resolve(name)
    except CnnCostError:
        return None


def counted(model, size: int | None = None, batch: int | None = None, dtype: str = "fp32",
            depth: int | None = None) -> Result:
    """The analytic result of a registered model; any other model `cnncost trace` accepts (a torchvision model,
    FILE.py:FACTORY; a name or a ModelSource) is counted by tracing the real model on the meta device
    (weights=None), its stages the module tree at the depth where its repeated blocks appear (or `depth`)."""
    entry = registered(model) if isinstance(model, str) else None
    if entry is not None:
        return Result.from_spec(build(entry.name, batch=batch, size=size), dtype)
    from cnncost.formulas import dtype_bytes
    dtype_bytes(dtype)
    from cnncost.trace.counter import count_source
    from cnncost.trace.models import load
    result = count_source(load(model) if isinstance(model, str) else model, batch=batch, size=size, dtype=dtype)
    result.table["stage"] = traced_stages(result.table, depth)
    how = f"the modules at depth {depth}" if depth else "its module tree where the repeated blocks appear"
    result.notes.insert(0, f"{result.model} has no analytic spec: counted by tracing the real model (stages are "
                           f"{how}; --depth N chooses another depth)")
    return result


# -- the stages of a traced model: its module tree where the repeated blocks appear ---------------------------

# A module whose name says attention (swin's ShiftedWindowAttention runs its products as plain matmuls).
ATTENTION_MODULE = re.compile(r"^.*?\b\w*(?:attn|attention)\w*(?=\.|$)", re.IGNORECASE)
DOMINANT = 0.9  # a module holding this share of the MACs is looked into rather than taken as one stage


def prefix(name: str, depth: int) -> str:
    """A module path cut to a depth of the module tree; the root's own ops as (model)."""
    return "(model)" if name in ("", "(model)") else ".".join(name.split(".")[:depth])


def signature(rows: pd.DataFrame, path: str) -> tuple:
    """What a module does, to tell repeated blocks apart: its rows' kinds and shapes, below its own path."""
    inside = rows[(rows.name == path) | rows.name.str.startswith(path + ".")]
    return tuple(zip(inside.kind, inside.in_shape, inside.out_shape, inside.name.str.removeprefix(path)))


def traced_stages(table: pd.DataFrame, depth: int | None = None) -> pd.Series:
    """Each traced row's stage: the modules at `depth`, or else the top-level modules, looking into a module that
    holds most of the MACs (a `features` that is the whole network) until its children are repeated blocks (a
    ViT's encoder layers: one stage of them) or it has no children left to tell apart."""
    if depth:
        return table.name.map(lambda n: prefix(n, depth))
    stages = table.name.map(lambda n: prefix(n, 1))
    levels = dict.fromkeys(stages.unique(), 1)
    total = max(int(table.macs.sum()), 1)
    while True:
        macs = table.macs.groupby(stages).sum()
        top = macs.idxmax()
        if top == "(model)" or macs[top] < DOMINANT * total:
            break
        inside = stages == top
        level = levels[top] + 1
        children = table.name[inside].map(lambda n: prefix(n, level))
        blocks = [c for c in children.unique() if c != top]
        if len(blocks) < 2 or len({signature(table[inside], b) for b in blocks}) == 1:
            break  # one child only, or all alike: the module is one stage (of repeated blocks)
        stages = stages.where(~inside, children)
        levels.update(dict.fromkeys(blocks, level))
    return stages


def family_order(name: str) -> tuple[int, int]:
    """Sort key: the lecture's order of families, then registration order."""
    family = MODELS[name].family
    return (FAMILIES.index(family) if family in FAMILIES else len(FAMILIES), list(MODELS).index(name))


def catalog(pattern: str = "*", every: bool = False) -> list[dict]:
    """Registered models matching a wildcard: aliases, family, default input size, params, core MACs at that size.
    With `every` (or when no registered name matches), also the torchvision classification models `cnncost
    trace` accepts (params from torchvision's metadata; their MACs come from `cnncost show`, which traces)."""
    hits = sorted(names(pattern), key=family_order)
    rows = []
    for name in hits:
        entry, totals = MODELS[name], spec_totals(build(name))
        rows.append({"model": name, "aliases": ", ".join(a for a, m in ALIASES.items() if m == name),
                     "family": entry.family, "size": entry.resolution, "params": totals["params"],
                     "core_macs": totals["core_macs"], "torchvision": entry.torchvision or ""})
    if every or not hits:
        rows += traceable(pattern, {r["torchvision"] for r in rows} | set(hits))
    if not rows:
        raise CnnCostError(f"no model matches {pattern!r}; `cnncost list --all` shows every name cnncost accepts")
    return rows


def traceable(pattern: str, known: set[str]) -> list[dict]:
    """torchvision classification models matching a wildcard that no registered spec stands for."""
    import fnmatch

    import torchvision

    from cnncost.trace.models import default_resolution, torchvision_meta
    rows = []
    for name in torchvision.models.list_models(module=torchvision.models):
        if name in known or not fnmatch.fnmatch(name, pattern.strip().lower()):
            continue
        params = torchvision_meta(name).get("num_params")
        rows.append({"model": name, "aliases": "", "family": "torchvision", "size": default_resolution(name),
                     "params": params, "core_macs": None, "torchvision": name})
    return rows


# -- describing a stage the way the papers' tables do ------------------------------------------


def layer_depth(table: pd.DataFrame) -> int:
    """Weight layers (conv, linear) on the longest path: projection shortcuts skipped, the longest branch counted."""
    core = table[table.category.isin(CORE) & ~table.name.str.contains("downsample", regex=False)]
    chain, branches = 0, {}
    for name in core.name:
        match = BRANCH.match(name)
        if match:
            branches.setdefault(match.group(1), Counter())[match.group(2)] += 1
        else:
            chain += 1
    return chain + sum(max(c.values()) for c in branches.values())


def describe(row) -> str | None:
    """One layer as in a paper's table: '3x3 128 g32', '3x3 96 dw', 'SE 4', 'fc 1000', 'max pool 3x3/2'."""
    channels = int(row.out_shape.split("x")[1 if row.category == "conv" else -1])
    if row.category == "conv":
        if row.name.endswith(".fc2"):
            return None
        if row.name.endswith(".fc1"):
            return f"SE {channels}"
        group = "" if row.groups == 1 else " dw" if row.groups == channels else f" g{row.groups}"
        return f"{row.kernel} {channels}{group}"
    if row.kind == "linear":
        return f"fc {channels}"
    if row.name.endswith(".avgpool"):
        return None  # squeeze-and-excitation's pool: part of 'SE'
    if row.kind.startswith("upsample"):  # resampling of any mode: 'upsample bilinear ->64x64'
        return f"{row.kind.replace('_', ' ')} {row.kernel}"
    if row.kind.startswith("adaptive"):  # adaptive avg / max pools of any rank
        pooled = "max pool" if "max" in row.kind else "avg pool"
        return f"global {pooled}" if set(row.kernel[2:].split("x")) == {"1"} else f"{pooled} {row.kernel}"
    step = row.stride.split("x")[0]
    return f"{'max pool' if 'max' in row.kind else 'avg pool'} {row.kernel}/{step}"


def repeated(ops: list[str]) -> str:
    """Ops as 'head, [unit] xN' when everything after a head repeats one unit N >= 2 times, else listed."""
    for start in range(len(ops)):
        rest = ops[start:]
        for size in range(1, len(rest) // 2 + 1):
            times, extra = divmod(len(rest), size)
            if not extra and rest == rest[:size] * times:
                unit = rest[0] if size == 1 and rest[0][0] in "[(" else f"[{', '.join(rest[:size])}]"
                return ", ".join([*ops[:start], f"{unit} x{times}"])
    return ", ".join(ops)


def group_of(name: str) -> tuple[str, str, str] | None:
    """('branch', module, branch) for an inception branch, ('block', block, '') for a residual/dense/MBConv block."""
    match = BRANCH.match(name)
    if match:
        return "branch", match.group(1), match.group(2)
    match = BLOCK.match(name)
    return ("block", match.group(1), "") if match else None


def layer_ops(rows: pd.DataFrame) -> list[str]:
    """Described layers in order; a block's layers become one '[a, b, c]' op, an inception module '(a | b, c)'."""
    ops, groups = [], {}
    for row in rows.itertuples():
        text, group = describe(row), group_of(row.name)
        if text and group:
            kind, owner, branch = group
            if owner not in groups:
                ops.append(owner)
                groups[owner] = (kind, {})
            groups[owner][1].setdefault(branch, []).append(text)
        elif text:
            ops.append(text)
    shown = {owner: f"({' | '.join(', '.join(b) for b in parts.values())})" if kind == "branch"
             else f"[{', '.join(parts[''])}]" for owner, (kind, parts) in groups.items()}
    return [shown.get(op, op) for op in ops]


def structure(rows: pd.DataFrame) -> str:
    """A stage's convs, fc layers and pools as its paper's table writes them (shortcut projections left out)."""
    keep = rows[rows.category.isin([*CORE, "pool"]) & ~rows.name.str.contains("downsample", regex=False)]
    return repeated(layer_ops(keep))


def runs(ops: list[str]) -> str:
    """Ops with each run of one op written once: 'a, [b] x9, c'."""
    out: list[list] = []
    for op in ops:
        if out and out[-1][0] == op:
            out[-1][1] += 1
        else:
            out.append([op, 1])
    return ", ".join(op if n == 1 else f"{op} x{n}" for op, n in out)


def block_items(rows: pd.DataFrame) -> list[str]:
    """A traced block's layers as its paper would name them: 'attention' for an attention layer and its
    projections, 'MLP 3072' for consecutive fully connected layers (their hidden width), convs and pools as
    described one by one."""
    attention = {n for n, k in zip(rows.name, rows.kind) if k == "attention"}
    attention |= {m.group(0) for n in rows.name if (m := ATTENTION_MODULE.match(n))}
    items, hidden, current = [], None, None
    for row in rows.itertuples():
        owner = next((a for a in attention if row.name == a or row.name.startswith(a + ".")), None)
        if owner is not None:
            if owner != current:
                items.append("attention")
            current, hidden = owner, None
            continue
        current = None
        if row.kind == "linear":
            width = int(row.out_shape.split("x")[-1])
            if hidden is None:
                hidden = width
                items.append(f"fc {width}")
            else:
                items[-1] = f"MLP {hidden}"
        elif row.category in CORE or row.category == "pool":
            text = describe(row)
            if text:
                items.append(text)
            hidden = None
    return items


def traced_structure(rows: pd.DataFrame, stage: str) -> str:
    """A traced stage as its blocks (the modules one level below it) and its own layers, runs written once."""
    level = len(stage.split("."))
    ops, seen = [], {}
    for name in rows.name:
        block = prefix(name, level + 1) if stage != "(model)" and len(name.split(".")) > level else None
        if block is None:
            text = describe_rows(rows[rows.name == name])
            ops += [t for t in text if t] if name not in seen else []
            seen[name] = True
        elif block not in seen:
            seen[block] = True
            items = block_items(rows[(rows.name == block) | rows.name.str.startswith(block + ".")])
            if items:
                ops.append(f"[{', '.join(items)}]" if len(items) > 1 else items[0])
    return runs(ops)


def describe_rows(rows: pd.DataFrame) -> list[str]:
    """The described layers of some rows (convs, fully connected layers, pools)."""
    return [describe(r) for r in rows.itertuples() if r.category in CORE or r.category == "pool"]


def output(shape: str) -> str:
    """An output shape as the papers write it: 56x56x256 (H x W x C), or 1000 for a vector."""
    dims = shape.split("x")[1:]
    return "x".join(dims[1:] + dims[:1]) if len(dims) == 3 else "x".join(dims)


def stage_rows(result: Result, unit: Unit = UNITS["macs"]) -> list[dict]:
    """One row per stage: output shape, structure, params, core MACs and all MACs."""
    rows = []
    for stage, group in result.table.groupby("stage", sort=False):
        core = group[group.category.isin(CORE)]
        traced = result.source != "analytic"
        rows.append({"stage": stage or "(model)", "output": output(group.out_shape.iloc[-1]),
                     "structure": traced_structure(group, stage or "(model)") if traced else structure(group),
                     "params": int(group.params.sum()), f"core_{unit.name}": unit.of(int(core.macs.sum())),
                     f"all_{unit.name}": unit.of(int(group.macs.sum()))})
    return rows


# -- comparing models ----------------------------------------------------------------------------


def published(name: str) -> dict:
    """The paper's params, MACs (its "FLOPs") and top-1 where known; torchvision's top-1 (reads its metadata)."""
    entry = registered(name)
    paper, count = (entry.paper if entry else {}), lambda v: None if v is None else round(v)  # noqa: E731
    out = {"published_params": count(paper.get("params")), "published_macs": count(paper.get("macs")),
           "published_top1_pct": paper.get("top1"), "published_in": paper.get("source", "").split(",")[0],
           "torchvision_top1_pct": None, "torchvision_weights": ""}
    weights = torchvision_weights(entry.torchvision if entry else name)
    if weights is not None:
        out.update(torchvision_top1_pct=weights.meta["_metrics"]["ImageNet-1K"]["acc@1"],
                   torchvision_weights=str(weights))
    return out


def torchvision_weights(name: str | None):
    """torchvision's default weights entry for a model name (metadata only, nothing downloaded), or None."""
    if not name or ":" in name:
        return None
    from torchvision.models import get_model_weights
    try:
        weights = get_model_weights(name).DEFAULT
    except (ValueError, AttributeError, KeyError):
        return None
    return weights if "ImageNet-1K" in weights.meta.get("_metrics", {}) else None


def totals_row(result: Result, unit: Unit, metadata: bool) -> dict:
    """A model's totals in a unit (with core FLOPs beside core MACs), depth, and published numbers."""
    core, every = result.core_macs, result.total("macs")
    row = {"model": result.model, "input": "x".join(map(str, result.input_shape)), "params": result.total("params"),
           f"core_{unit.name}": unit.of(core), **({"core_flops": 2 * core} if unit.name == "macs" else {}),
           f"all_{unit.name}": unit.of(every), "activations": result.total("activations"),
           "depth": layer_depth(result.table)}
    return {**row, **(in_unit([published(result.model)], unit)[0] if metadata else {})}


def ratios(rows: list[dict], columns: Sequence[str]) -> list[dict]:
    """Each row with column_ratio = value / the first row's value."""
    first = rows[0]
    return [{**r, **{f"{c}_ratio": round(r[c] / first[c], 3) if first[c] else None for c in columns}} for r in rows]


def merged_order(orders: list[list[str]]) -> list[str]:
    """Stage names of several models in one order that keeps each model's own order (new ones go before the
    next stage they share with the models already placed)."""
    merged: list[str] = []
    for order in orders:
        for i, stage in enumerate(order):
            if stage not in merged:
                later = [merged.index(s) for s in order[i + 1:] if s in merged]
                merged.insert(later[0] if later else len(merged), stage)
    return merged


def by_stage(results: list[Result], unit: Unit) -> list[dict]:
    """Per-stage rows of several models, the models adjacent within each stage, with core MACs as a ratio to
    the first model's same stage."""
    tables = {r.model: {row["stage"]: row for row in stage_rows(r, unit)} for r in results}
    first, key, rows = tables[results[0].model], f"core_{unit.name}", []
    for stage in merged_order([list(table) for table in tables.values()]):
        for model, table in tables.items():
            if stage in table:
                base = first.get(stage, {}).get(key)
                rows.append({"stage": stage, "model": model, **table[stage],
                             f"{key}_ratio": round(table[stage][key] / base, 3) if base else None})
    return rows


def comparison(models: Sequence, size: int | None = None, batch: int | None = None, dtype: str = "fp32",
               unit: Unit = UNITS["macs"], metadata: bool = True, depth: int | None = None,
               device: str | None = None) -> tuple[list[dict], list[dict]]:
    """Totals rows (ratios to the first model) and per-stage rows of several models (names, or ModelSources to
    trace), exact integers or None."""
    if len(models) < 2:
        raise CnnCostError("compare needs at least two models")
    keys = [m.name if not isinstance(m, str) else entry.name if (entry := registered(m)) else m.strip().lower()
            for m in models]
    twice = [name for name, n in Counter(keys).items() if n > 1]
    if twice:
        raise CnnCostError(f"{twice[0]} is given twice (names and aliases count as the same model; give a factory "
                           f"different arguments as NAME[key=value])")
    results = [counted(m, size, batch, dtype, depth) for m in models]
    rows = [{**totals_row(r, unit, metadata), **(predicted_speed(r, device, dtype) if device else {})}
            for r in results]
    columns = ["params", f"core_{unit.name}", "activations", *(["predicted_img_per_s"] if device else [])]
    return ratios(rows, columns), by_stage(results, unit)


def predicted_speed(result: Result, device: str, dtype: str) -> dict:
    """A model's predicted latency and images/s on a device (cnncost predict's), as columns of a totals row."""
    from cnncost.speed.estimate import speed_columns
    speed = speed_columns(result, device, dtype)
    return {"predicted_device": speed["device"], "predicted_latency_ms": round(speed["latency_ms"], 4),
            "predicted_img_per_s": round(speed["img_per_s"], 1)}


def compare(models: Sequence[str], size: int | None = None, batch: int | None = None, dtype: str = "fp32",
            unit: Unit = UNITS["macs"], metadata: bool = True) -> Comparison:
    """Totals (one row per model, ratios to the first) and the per-stage table (conv1, conv2_x, ... fc)."""
    totals, stages = comparison(models, size, batch, dtype, unit, metadata)
    return Comparison(pd.DataFrame(totals), pd.DataFrame(stages))
