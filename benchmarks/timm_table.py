"""timm's published GPU inference table, read and traced: the RTX 3090 rows predict's GPU constants come from.

timm publishes whole-model throughput per GPU in `results/` of github.com/huggingface/pytorch-image-models. Only
the RTX 3090 AMP inference tables may be used here (`benchmark-infer-amp-nchw-pt240-cu124-rtx3090.csv` and its
`nhwc` twin); every other published table is kept aside to judge the predictions. The tables are never copied into
this repository: their path is an argument, and only model name, batch and size are kept beside our predictions.

Each model is traced once on the meta device at the table's batch and size in fp16 (the table is fp16 autocast),
and its rows are cached (`--cache`, default /tmp/cnncost-predict-cache) so reruns take seconds.
"""
from __future__ import annotations

import hashlib
import pickle
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # this checkout's cnncost, not another one installed in the environment
    sys.path.insert(0, str(ROOT))

TIMM_RESULTS = "https://github.com/huggingface/pytorch-image-models/tree/main/results"
TABLES = {"nchw": "benchmark-infer-amp-nchw-pt240-cu124-rtx3090.csv",
          "nhwc": "benchmark-infer-amp-nhwc-pt240-cu124-rtx3090.csv"}
DEFAULT_DIR = Path("/work/timm-data")
CACHE = Path("/tmp/cnncost-predict-cache")
# The trace columns a prediction reads (the cache keeps only these).
COLUMNS = ["name", "kind", "category", "in_shape", "out_shape", "kernel", "groups", "macs", "bias_adds",
           "bytes_read", "bytes_written", "module", "op"]


def table_path(layout: str, folder: str | Path | None = None) -> Path:
    """Where the RTX 3090 table of a layout (nchw, nhwc) lies; exit with where to get it when it is not there."""
    path = Path(folder or DEFAULT_DIR) / TABLES[layout]
    if not path.is_file():
        sys.exit(f"{path} not found: download {TABLES[layout]} from {TIMM_RESULTS} and pass its folder with "
                 f"--timm-dir (never commit it)")
    return path


def read(layout: str, folder: str | Path | None = None):
    """The table of a layout as a DataFrame: model, size, batch, img_per_s (measured), macs_per_image (timm's)."""
    import pandas as pd
    raw = pd.read_csv(table_path(layout, folder))
    return pd.DataFrame({"model": raw.model, "size": raw.infer_img_size.astype(int),
                         "batch": raw.infer_batch_size.astype(int), "img_per_s": raw.infer_samples_per_sec,
                         "timm_gmacs": raw.infer_gmacs})


def family(model: str) -> str:
    """A model's family for sampling: its name up to the first digit or underscore ('convnext_tiny' -> 'convnext')."""
    head = model.split("_")[0]
    return "".join(ch for ch in head if not ch.isdigit()) or head


def sample(models: list[str], every: int) -> list[str]:
    """Every `every`-th model of each family (in the table's order, fastest first), the first always kept."""
    seen: dict[str, int] = {}
    kept = []
    for m in models:
        n = seen.get(family(m), 0)
        seen[family(m)] = n + 1
        if n % every == 0:
            kept.append(m)
    return kept


def cache_file(model: str, size: int, batch: int, dtype: str, cache: Path) -> Path:
    """The cache file of one traced model (its key includes the tracer's source, so a new tracer retraces)."""
    return cache / f"{model}-{size}-{batch}-{dtype}-{tracer_stamp()}.pkl"


def tracer_stamp() -> str:
    """A short hash of cnncost/trace/*.py and formulas.py, so cached rows are redone when the tracer changes."""
    import cnncost
    root = Path(cnncost.__file__).parent
    digest = hashlib.sha1()
    for path in sorted([*root.glob("trace/*.py"), root / "formulas.py"]):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def traced(model: str, size: int, batch: int, dtype: str = "fp16", cache: Path = CACHE):
    """The trace rows (a DataFrame of COLUMNS) of a timm model at a size and batch, from the cache or traced now;
    a string (the error) when it cannot be traced."""
    path = cache_file(model, size, batch, dtype, cache)
    if path.exists():
        return pickle.loads(path.read_bytes())
    from cnncost.trace import count
    from cnncost.trace.models import timm_input_size
    try:
        given = None if timm_input_size(model)[1:] == (size, size) else size
        result = count(f"timm:{model}", size=given, batch=batch, dtype=dtype)
        rows = result.table[COLUMNS].copy()
        rows.attrs["unsupported"] = dict(result.unsupported)
        found = rows
    except Exception as e:  # noqa: BLE001 - a model that does not trace is reported, not fatal
        found = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(found))
    return found


def trace_all(table, dtype: str = "fp16", cache: Path = CACHE, progress: bool = True) -> dict:
    """(model, size, batch) -> trace rows (or error text) for every row of a table (a model can be listed at
    several sizes), caching as it goes."""
    out = {}
    start = time.time()
    for i, row in enumerate(table.itertuples()):
        out[row.model, row.size, row.batch] = traced(row.model, row.size, row.batch, dtype, cache)
        if progress and (i % 50 == 0 or i == len(table) - 1):
            print(f"  traced {i + 1}/{len(table)} ({time.time() - start:.0f} s)", file=sys.stderr, flush=True)
    return out


def limit_memory(gib: float = 10) -> None:
    """Cap this process's address space, so a model whose meta trace falls back to the CPU at batch 1024 fails
    with an error row instead of filling a shared machine's memory."""
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (int(gib * 2**30), int(gib * 2**30)))


if __name__ == "__main__":  # fill the cache: python benchmarks/timm_table.py [nchw|nhwc] [every]
    limit_memory()
    layout = sys.argv[1] if len(sys.argv) > 1 else "nchw"
    frame = read(layout)
    chosen = sample(list(frame.model), int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    rows = trace_all(frame[frame.model.isin(chosen)])
    failed = {m: r for m, r in rows.items() if isinstance(r, str)}
    print(f"{len(rows) - len(failed)} traced, {len(failed)} failed")
    for key, e in list(failed.items())[:40]:
        print(f"  {key}: {e}")
