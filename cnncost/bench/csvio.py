"""Benchmark rows appended to a CSV with a stable schema; the file is always whole (temp file + rename)."""
from __future__ import annotations

import contextlib
import csv
import io
import signal
import threading
from pathlib import Path
from typing import Iterable, Mapping

from cnncost.errors import CnnCostError
from cnncost.output import reading, write_atomic
from cnncost.trace.sources import one_line

# The schema: every row has exactly these keys, in this order. Units are in the names.
SCHEMA = (
    "model", "mode", "batch", "size", "dtype", "channels_last", "compile", "compile_mode", "cuda_graphs",
    "img_per_s", "img_per_s_min", "img_per_s_max", "latency_ms_p50", "latency_ms_p90", "peak_mem_mb",
    "macs_per_image", "step_macs_per_image", "macs_source", "tflops_achieved", "peak_tflops", "mfu",
    "warmup", "iters", "repeats", "device", "device_name", "driver", "torch", "torchvision", "cuda", "cudnn",
    "python", "threads", "timestamp_utc", "error",
)


ENCODING = "utf-8-sig"  # UTF-8, with the byte-order mark a spreadsheet may write skipped


def header(path: Path) -> list[str] | None:
    """The header of an existing CSV, or None when the file is absent or empty; a one-line error when it is not
    UTF-8 CSV text (binary, another encoding) or cannot be read."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        with path.open(newline="", encoding=ENCODING) as handle:
            return next(csv.reader(handle), None)
    except (UnicodeDecodeError, csv.Error) as e:
        raise CnnCostError(f"{path} is not a UTF-8 CSV file ({one_line(e)})") from None
    except OSError as e:
        raise CnnCostError(f"cannot read {path}: {e.strerror}") from None


def check_target(path: str | Path) -> Path:
    """A CSV path rows can be appended to (absent, empty, or with our header, in a folder that takes new files),
    checked before any work; else a one-line error."""
    from cnncost.output import check_output
    if str(path) in ("", "-"):
        raise CnnCostError("--out needs a CSV file name")
    check_output(str(path))
    path = Path(path)
    if path.exists() and not path.is_file():
        raise CnnCostError(f"cannot append rows to {path}: it is not a regular file")
    found = header(path)
    if found is not None and tuple(found) != SCHEMA:
        raise CnnCostError(f"{path} has a different header than cnncost bench rows; choose another --out file")
    return path


def to_text(rows: Iterable[Mapping], with_header: bool) -> str:
    """Rows as CSV lines in schema order (missing keys empty, unknown keys an error)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SCHEMA, lineterminator="\n", extrasaction="raise")
    if with_header:
        writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return buffer.getvalue()


@contextlib.contextmanager
def interrupts_deferred():
    """Hold Ctrl-C (SIGINT) until the block ends, so a file being replaced is never left half-done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *args: caught.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt


def append_rows(path: str | Path, rows: Iterable[Mapping]) -> None:
    """Append whole rows to the CSV at path (created with the header if absent), atomically."""
    path = check_target(path)
    new = list(rows)
    if not new:
        return
    with interrupts_deferred():
        old = path.read_text(encoding="utf-8") if header(path) is not None else ""
        if old and not old.endswith("\n"):
            old += "\n"
        write_atomic(path, old + to_text(new, with_header=not old))


def read_rows(path: str | Path):
    """The rows of a bench CSV as a pandas DataFrame; a one-line error if it is missing or not ours."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise CnnCostError(f"no such CSV file: {path}")
    reading(path, "the CSV")
    found = header(path)
    missing = sorted(set(SCHEMA) - set(found or ()))
    if missing:
        raise CnnCostError(f"{path} is not a cnncost bench CSV (missing columns: {', '.join(missing[:5])})")
    try:
        rows = pd.read_csv(path, keep_default_na=False, na_values={c: [""] for c in SCHEMA if c != "error"},
                           encoding=ENCODING)
    except (UnicodeDecodeError, ValueError, pd.errors.ParserError) as e:
        raise CnnCostError(f"{path} is not a readable bench CSV ({one_line(e)})") from None
    rows = impossible_marked(rows)
    rows.attrs["path"] = str(path)  # named in messages about its rows
    return rows


MEASURED = ("batch", "size", "img_per_s")  # must be positive finite numbers where a row has them


def impossible_marked(rows):
    """Rows whose batch, size or img_per_s is not a positive finite number (0, -5, nan, inf, 'fast': a hand-edited
    or foreign file) count as failed: the value is dropped and the error column says why."""
    import numpy as np
    import pandas as pd
    rows["error"] = rows["error"].astype(str)
    for column in MEASURED:
        number = pd.to_numeric(rows[column], errors="coerce")
        bad = rows[column].notna() & ~(np.isfinite(number) & (number > 0))
        rows.loc[bad & (rows["error"] == ""), "error"] = f"not a measurement: {column} " + rows[column].astype(str)
        rows[column] = number.where(~bad)
    return rows
