"""What training costs: forward + backward multiply-adds per layer kind, and the GPU-hours they imply.

Every layer's training work is derived from its forward count F (the inference MACs in its row) and its output
elements A, by the rule of its kind below; each rule says why. Conv and linear dominate (the "3x" rule of
thumb comes from them), but it is not 3x for every layer and not for the first one.
"""
from __future__ import annotations

from pathlib import Path

from dataclasses import dataclass, field
from typing import Callable

from cnncost.formulas import CORE
from cnncost.errors import CnnCostError

IMAGENET_1K_TRAIN = 1_281_167  # ImageNet-1k (ILSVRC 2012) training images


@dataclass(frozen=True)
class Rule:
    """Training MACs of one layer kind from forward MACs F and output elements A, with the reason."""

    factor: str
    train: Callable[[int, int], int]
    why: str


CORE_RULE = Rule("3F", lambda f, a: 3 * f,
                 "forward F; grad-input dX = dY W^T is the same MACs F; grad-weight dW = X^T dY is F again")
FIRST_RULE = Rule("2F", lambda f, a: 2 * f,
                  "first layer: the image needs no gradient, so only forward F and grad-weight F")
RULES: dict[str, Rule] = {
    "conv": CORE_RULE,
    "linear": CORE_RULE,
    "norm": Rule("7F", lambda f, a: 7 * f,
                 "inference folds BN to 1 MAC/element; training forward needs sum x, sum x^2 and the scale-shift "
                 "(3), backward sum dY, sum dY*x and dX = a dY + b x + c (4)"),
    "activation": Rule("2F", lambda f, a: 2 * f, "forward f(x) 1/element; backward dY * f'(x) 1/element"),
    "maxpool2d": Rule("F+A", lambda f, a: f + a,
                      "forward k*k compares per output; backward routes each output gradient to its argmax (1/output)"),
    "avgpool2d": Rule("2F", lambda f, a: 2 * f, "backward spreads each output gradient over its k*k window: as many adds"),
    "adaptive_avgpool2d": Rule("2F", lambda f, a: 2 * f,
                               "backward gives every input element its bin's gradient / area: 1/input element = F"),
    "add": Rule("2F", lambda f, a: 2 * f,
                "add passes the gradient through; the two gradients meet at the fork and are added: 1/element"),
    "mul": Rule("3F", lambda f, a: 3 * f, "backward dX = dY * s (1/element) and ds = sum dY * x (1/element)"),
    "dropout": Rule("2A", lambda f, a: 2 * a,
                    "free at inference, in training the mask multiply runs forward and backward: 1/element each"),
    "other": Rule("F", lambda f, a: f, "concat, flatten: copies and views, no arithmetic either way"),
    "pool": Rule("2F", lambda f, a: 2 * f, "backward spreads each gradient back over its window"),
    "elementwise": Rule("2F", lambda f, a: 2 * f, "backward: one op per element, as forward"),
}


def rule_for(kind: str, category: str, first: bool) -> Rule:
    """The rule of a layer: the first core layer's, its kind's, else its category's."""
    if first and category in CORE:
        return FIRST_RULE
    return RULES.get(kind) or RULES.get(category) or RULES["other"]


def training_table(table):
    """A layer table (Result.table) with train_macs and the factor used, per row."""
    out = table[["name", "kind", "category", "macs", "activations"]].copy()
    first_core = next((i for i, c in enumerate(table.category) if c in CORE), None)
    rules = [rule_for(k, c, i == first_core) for i, (k, c) in enumerate(zip(table.kind, table.category))]
    out["train_macs"] = [r.train(int(f), int(a)) for r, f, a in zip(rules, table.macs, table.activations)]
    out["factor"] = [r.factor for r in rules]
    out["why"] = [r.why for r in rules]
    return out


def by_kind(train) -> list[dict]:
    """Forward and training MACs summed per (kind, factor), with the reason: the justification table."""
    groups = train.groupby(["kind", "category", "factor", "why"], sort=False)
    summed = groups[["macs", "train_macs"]].sum().reset_index()
    summed.insert(4, "layers", groups.size().values)
    return [{"kind": r.kind, "category": r.category, "layers": int(r.layers), "inference_macs": int(r.macs),
             "factor": r.factor, "train_macs": int(r.train_macs), "why": r.why} for r in summed.itertuples()]


@dataclass
class TrainCost:
    """Training budget of one model: per-image MACs, total MACs over the epochs, and GPU-hours estimates."""

    model: str
    size: int
    epochs: int
    dataset_size: int
    forward_macs_per_image: int
    train_macs_per_image: int
    all_train_macs_per_image: int
    source: str
    kinds: list[dict] = field(default_factory=list)
    estimates: list[dict] = field(default_factory=list)
    unsupported: dict[str, int] = field(default_factory=dict)

    @property
    def images(self) -> int:
        """Images seen in training: epochs x dataset size."""
        return self.epochs * self.dataset_size

    @property
    def total_train_macs(self) -> int:
        """Conv + linear training MACs over all epochs (the MFU convention)."""
        return self.images * self.train_macs_per_image

    def summary(self) -> dict:
        """The headline numbers, exact integers with units in their names."""
        return {"model": self.model, "size": self.size, "epochs": self.epochs, "dataset_size": self.dataset_size,
                "images": self.images, "forward_macs_per_image": self.forward_macs_per_image,
                "train_macs_per_image": self.train_macs_per_image,
                "train_factor": round(self.train_macs_per_image / self.forward_macs_per_image, 4),
                "all_categories_train_macs_per_image": self.all_train_macs_per_image,
                "total_train_macs": self.total_train_macs, "macs_source": self.source}


def check_budget(epochs: float, dataset_size: int) -> None:
    """Epochs and dataset size must be positive."""
    if epochs <= 0 or dataset_size <= 0:
        raise CnnCostError(f"epochs and dataset size must be positive, got {epochs} and {dataset_size}")


def hours_at_mfu(total_macs: int, peak_tflops: float, mfu: float) -> float:
    """GPU-hours = 2 x MACs / (MFU x peak FLOP/s) / 3600."""
    if not 0 < mfu <= 1:
        raise CnnCostError(f"MFU must be in (0, 1], got {mfu}")
    return 2 * total_macs / (mfu * peak_tflops * 1e12) / 3600


def hours_at_rate(images: int, img_per_s: float) -> float:
    """GPU-hours = images / (images per second) / 3600."""
    return images / img_per_s / 3600


def measured_rate(csv, model: str, size: int, dtype: str) -> dict:
    """The fastest error-free training row of this model, size and dtype in a bench CSV (a path, or its rows
    already read); a one-line error naming the rows the CSV has when none matches."""
    from cnncost.bench.csvio import read_rows
    df = read_rows(csv) if isinstance(csv, (str, Path)) else csv
    csv_path = df.attrs.get("path", csv)
    usable = df[(df["mode"] == "train") & (df.error.fillna("") == "") & df.img_per_s.notna()]
    rows = usable[(usable.model == model) & (usable["size"] == size) & (usable.dtype == dtype)]
    if rows.empty:
        have = sorted({f"{r.model} {r.size} px {r.dtype}" for r in usable.itertuples()})
        raise CnnCostError(f"{csv_path} has no measured training row of {model} at {size} px in {dtype}; "
                           + (f"it has: {', '.join(have[:8])}{' ...' if len(have) > 8 else ''}" if have
                              else "it has no error-free training rows (bench --mode train)"))
    row = rows.loc[rows.img_per_s.idxmax()]
    return {"device_name": row.device_name, "batch": int(row.batch), "img_per_s": float(row.img_per_s),
            "compile": bool(row.compile), "channels_last": bool(row.channels_last),
            "on_cpu": str(row.device).lower() == "cpu"}


def estimates(cost: TrainCost, csv, device_key: str, dtype: str, mfu: float) -> list[dict]:
    """GPU-hours at a measured training throughput (when the CSV has a matching row) and at a stated MFU."""
    from cnncost.bench.devices import by_key
    out = []
    rate = measured_rate(csv, cost.model, cost.size, dtype) if csv is not None else None
    if rate:
        hours = round(hours_at_rate(cost.images, rate["img_per_s"]), 3)
        out.append({"basis": f"measured {rate['img_per_s']:.1f} img/s training on {rate['device_name']}"
                             f"{' (CPU)' if rate['on_cpu'] else ''} ({dtype}, batch {rate['batch']}"
                             f"{', compiled' if rate['compile'] else ''})",
                    "device": rate["device_name"], "img_per_s": rate["img_per_s"], "mfu": None,
                    "gpu_hours": None if rate["on_cpu"] else hours, "cpu_hours": hours if rate["on_cpu"] else None})
    device = by_key(device_key)
    peak = device.peak_tflops(dtype)
    if peak is None:
        raise CnnCostError(f"{device.name} has no {dtype} tensor-core mode; choose another --dtype")
    hours = hours_at_mfu(cost.total_train_macs, peak, mfu)
    out.append({"basis": f"assumed MFU {mfu:.0%} of {device.name} dense {dtype} peak {peak:g} TFLOP/s",
                "device": device.name, "img_per_s": round(cost.images / hours / 3600, 1), "mfu": mfu,
                "gpu_hours": round(hours, 3), "cpu_hours": None})
    return out


def train_cost(model, size: int | None = None, epochs: int = 90, dataset_size: int = IMAGENET_1K_TRAIN,
               csv=None, device_key: str = "h100-sxm", dtype: str = "bf16", mfu: float = 0.3,
               per_kind: bool = True) -> TrainCost:
    """The training budget of a model: per-kind factors (unless per_kind is False: one trace fewer), total MACs,
    and GPU-hours measured (`csv`: a bench CSV's path, or its rows already read) or at a stated MFU. `model`: a
    name (a registered spec's rules where no real model runs), or a ModelSource traced as it is built."""
    from cnncost.bench import counts

    check_budget(epochs, dataset_size)
    if size is not None and size <= 0:
        raise CnnCostError(f"input size must be positive, got {size}")
    entry = counts.analytic_entry(model) if isinstance(model, str) else None
    source = real_model(entry, model) if isinstance(model, str) else model
    name = entry.name if entry else source.name
    if entry is not None:
        size = size or entry.resolution
    cost = traced_cost(source, name, size, epochs, dataset_size, per_kind) if source else None
    if cost is None:  # an analytic-only spec or a paper variant: no real model to trace, the rules instead
        result = counts.per_layer(name, size, runs=False)
        table = training_table(result.table)
        core = int(table.train_macs[table.category.isin(CORE)].sum())
        cost = TrainCost(name, size, epochs, dataset_size, result.core_macs, core, int(table.train_macs.sum()),
                         result.source, by_kind(table), unsupported=dict(result.unsupported))
    cost.estimates = estimates(cost, csv, device_key, dtype, mfu)
    return cost


# -- training MACs traced (cnncost.trace.train), with the per-kind ratios measured ----------------------------

TRACED = "cnncost train (traced training step)"
MEASURED_WHY = {
    "conv": "dX = dY W^T and dW = X^T dY: F each (first layer: no dX); adds of gradients meeting at a fork",
    "linear": "dX = dY W and dW = dY^T X: F each",
    "norm": "forward: batch mean, variance, normalise; backward: sum dY, sum dY x^, dX = a dY + b x + c",
    "activation": "dX = dY f'(x): 1 op per element",
    "maxpool2d": "k*k compares per output; backward: 1 add per output, at its argmax",
    "pool": "backward spreads each gradient over its window: as many adds as forward",
    "add": "the gradient passes through unchanged",
    "mul": "dX = dY s and ds = sum dY x",
    "other": "copies and views: no arithmetic; the loss's softmax",
}


def real_model(entry, model: str):
    """The model source to trace for a training step, or None (analytic-only spec, or a paper variant whose
    real counterpart is a different network)."""
    from cnncost.bench import counts
    try:
        source = counts.model_source(entry.name if entry else model)
    except CnnCostError:
        if entry is None:
            raise
        return None
    return None if source.paper_variant else source


def traced_cost(source, name: str, size: int, epochs: int, dataset_size: int, per_kind: bool = True) -> TrainCost:
    """Per-image training MACs from a traced training step at batch 1 (forward + grad-input + grad-weight, and
    what checkpointing recomputes; the optimizer's MACs are per step, not per image, and are left out); per kind,
    against the inference forward traced at batch 1."""
    from cnncost.trace.counter import count_source
    from cnncost.trace.train import STEP_PHASES as phases, train_source
    result = train_source(source, batch=1, size=size)
    core = sum(result.core(c) for c in phases)
    every = int(result.by_category[list(phases)].to_numpy().sum())
    kinds = measured_kinds(result.table, count_source(source, batch=1, size=size).table) if per_kind else []
    return TrainCost(name, source.width(size), epochs, dataset_size, result.core("forward_macs"), core, every,
                     TRACED, kinds,
                     unsupported=dict(result.unsupported))


BASIS = "F = the inference forward's MACs (batch norm folded: 1 per element)"


def measured_kinds(table, inference) -> list[dict]:
    """Traced training MACs summed per layer kind (the first core layer apart), on one basis: F, the same
    layers' inference forward (`inference`, a Result table), on which the rules of thumb are stated; the
    measured ratio train / F next to the rule and why it is what it is. A kind with no inference work (the
    loss, dropout) has no ratio."""
    per_layer = inference.groupby(["name", "kind"]).macs.sum().to_dict()
    train = table[table.forward_macs > 0].copy()
    first_core = next((i for i, c in enumerate(train.category) if c in CORE), None)
    rules = [rule_for(k, c, i == first_core) for i, (k, c) in enumerate(zip(train.kind, train.category))]
    train["factor"] = [r.factor for r in rules]
    train["train"] = train.forward_macs + train.grad_input_macs + train.grad_weight_macs
    out = []
    for (kind, category, factor), group in train.groupby(["kind", "category", "factor"], sort=False):
        f = int(sum(per_layer.get(layer, 0) for layer in set(zip(group.name, group.kind))))
        total = int(group["train"].sum())
        why = MEASURED_WHY.get(kind) or MEASURED_WHY.get(category) or MEASURED_WHY["other"]
        out.append({"kind": kind, "category": category, "layers": len(group), "inference_macs": f,
                    "training_forward_macs": int(group.forward_macs.sum()),
                    "grad_input_macs": int(group.grad_input_macs.sum()),
                    "grad_weight_macs": int(group.grad_weight_macs.sum()), "train_macs": total,
                    "measured": f"{total / f:.3f}F" if f else "", "factor": factor, "why": why})
    return out
