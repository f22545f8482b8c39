"""What training costs: forward + backward multiply-adds per layer kind, and the GPU-hours they imply.

Every layer's training work is derived from its forward count F (the inference MACs in its row) and its output
elements A, by the rule of its kind below; each rule says why. Conv and linear dominate (the "3x" rule of
thumb comes from them), but it is not 3x for every layer and not for the first one.
"""
from __future__ import annotations

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
    return [{"kind": r.kind, "category": r.category, "layers": int(r.layers), "forward_macs": int(r.macs),
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


def measured_rate(csv_path, model: str, size: int, dtype: str) -> dict | None:
    """The fastest error-free training row of this model, size and dtype in a bench CSV, or None."""
    from cnncost.bench.csvio import read_rows
    df = read_rows(csv_path)
    rows = df[(df.model == model) & (df["mode"] == "train") & (df.error.fillna("") == "") & (df["size"] == size)
              & (df.dtype == dtype) & df.img_per_s.notna()]
    if rows.empty:
        return None
    row = rows.loc[rows.img_per_s.idxmax()]
    return {"device_name": row.device_name, "batch": int(row.batch), "img_per_s": float(row.img_per_s),
            "compile": bool(row.compile), "channels_last": bool(row.channels_last)}


def estimates(cost: TrainCost, csv_path, device_key: str, dtype: str, mfu: float) -> list[dict]:
    """GPU-hours at a measured training throughput (when the CSV has a matching row) and at a stated MFU."""
    from cnncost.bench.devices import by_key
    out = []
    rate = measured_rate(csv_path, cost.model, cost.size, dtype) if csv_path else None
    if rate:
        out.append({"basis": f"measured {rate['img_per_s']:.1f} img/s training on {rate['device_name']} "
                             f"({dtype}, batch {rate['batch']}{', compiled' if rate['compile'] else ''})",
                    "device": rate["device_name"], "img_per_s": rate["img_per_s"], "mfu": None,
                    "gpu_hours": round(hours_at_rate(cost.images, rate["img_per_s"]), 3)})
    device = by_key(device_key)
    peak = device.peak_tflops(dtype)
    if peak is None:
        raise CnnCostError(f"{device.name} has no {dtype} tensor-core mode; choose another --dtype")
    hours = hours_at_mfu(cost.total_train_macs, peak, mfu)
    out.append({"basis": f"assumed MFU {mfu:.0%} of {device.name} dense {dtype} peak {peak:g} TFLOP/s",
                "device": device.name, "img_per_s": round(cost.images / hours / 3600, 1), "mfu": mfu,
                "gpu_hours": round(hours, 3)})
    return out


def train_cost(model: str, size: int | None = None, epochs: int = 90, dataset_size: int = IMAGENET_1K_TRAIN,
               csv_path=None, device_key: str = "h100-sxm", dtype: str = "bf16", mfu: float = 0.3) -> TrainCost:
    """The training budget of a model: per-kind factors, total MACs, and GPU-hours measured or at a stated MFU."""
    from cnncost.bench import counts

    check_budget(epochs, dataset_size)
    if size is not None and size <= 0:
        raise CnnCostError(f"input size must be positive, got {size}")
    entry = counts.analytic_entry(model)
    source = None if entry else counts.model_source(model)
    name = entry.name if entry else source.name
    size = size or (entry.resolution if entry else source.resolution)
    result = counts.per_layer(name, size, runs=False)
    table = training_table(result.table)
    core = int(table.train_macs[table.category.isin(CORE)].sum())
    cost = TrainCost(name, size, epochs, dataset_size, result.core_macs, core, int(table.train_macs.sum()),
                     result.source, by_kind(table), unsupported=dict(result.unsupported))
    cost.estimates = estimates(cost, csv_path, device_key, dtype, mfu)
    return cost
