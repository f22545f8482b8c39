"""Render tables as rich text, JSON, CSV or markdown, and write files atomically (never half-written)."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

from cnncost.errors import CnnCostError
from cnncost.units import Unit, human

FORMATS = ("table", "json", "csv", "md")
COUNT_WORDS = ("macs", "flops", "params", "activations", "bytes", "adds", "buffers", "weights")

Records = list[dict]


def check_format(fmt: str) -> str:
    """The format name, or a one-line error listing the choices."""
    if fmt not in FORMATS:
        raise CnnCostError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def in_unit(records: Iterable[Mapping], unit: Unit) -> Records:
    """Rename every *macs* field to *flops* (and double it) when the unit is FLOPs."""
    if unit.name == "macs":
        return [dict(r) for r in records]
    return [{k.replace("macs", "flops"): (unit.of(v) if "macs" in k and isinstance(v, int) else v)
             for k, v in r.items()} for r in records]


def is_count(column: str) -> bool:
    """Whether a column holds a count shown with a metric prefix in human formats."""
    return any(word in column for word in COUNT_WORDS) and "per" not in column


def humanize(records: Records) -> Records:
    """Counts as 112.9M / 4.09G, for tables meant to be read."""
    return [{k: human(v) if is_count(k) and isinstance(v, (int, float)) and not isinstance(v, bool) else v
             for k, v in r.items()} for r in records]


def render(tables: Mapping[str, Records], fmt: str, data: object = None) -> str:
    """Text of tables in a format: rich table, JSON (data, or the tables), CSV (the first table), markdown."""
    check_format(fmt)
    if fmt == "json":
        return json.dumps(tables if data is None else data, indent=2) + "\n"
    if fmt == "csv":
        return to_csv(next(iter(tables.values()), []))
    if fmt == "md":
        from tabulate import tabulate
        return "\n".join(f"### {title}\n\n{tabulate(humanize(rows), headers='keys', tablefmt='github')}\n"
                         for title, rows in tables.items())
    return to_rich(tables)


def to_csv(rows: Records) -> str:
    """Rows as CSV with a header, exact numbers."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def to_rich(tables: Mapping[str, Records]) -> str:
    """Tables drawn by rich: numbers right-aligned with metric prefixes and never cut; long text folds."""
    from rich.console import Console
    from rich.table import Table

    drawn, widest = [], 0
    for title, rows in tables.items():
        table = Table(title=title, title_justify="left")
        shown = [{k: "" if v is None else str(v) for k, v in r.items()} for r in humanize(rows)]
        for column in (rows[0] if rows else {}):
            natural = max(len(column), *(len(r[column]) for r in shown))
            if isinstance(rows[0][column], (int, float)):
                table.add_column(column, justify="right", no_wrap=True, min_width=natural)
            else:
                table.add_column(column, overflow="fold", min_width=min(natural, 24))
        for row in shown:
            table.add_row(*row.values())
        widest = max(widest, sum(c.min_width or 0 for c in table.columns) + 3 * len(table.columns) + 1)
        drawn.append(table)
    terminal = int(os.environ.get("COLUMNS", 0)) or shutil.get_terminal_size((160, 24)).columns
    console = Console(file=io.StringIO(), width=max(terminal, widest), record=True)
    for table in drawn:
        console.print(table)
    return console.export_text()


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def open_mode(content: str | bytes) -> dict:
    """open() arguments for text (utf-8, newlines as given) or bytes."""
    return {"mode": "wb"} if isinstance(content, bytes) else {"mode": "w", "encoding": "utf-8", "newline": ""}


def write_through(path: Path, content: str | bytes) -> None:
    """Write straight into a device or pipe (/dev/stdout, a FIFO): nothing to rename over."""
    try:
        with open(path, **open_mode(content)) as handle:
            handle.write(content)
    except OSError as e:
        raise CnnCostError(f"cannot write {path}: {e.strerror}") from None


def write_atomic(path: str | os.PathLike, content: str | bytes) -> None:
    """Write text or bytes to path via a temporary file and rename: the file is whole or untouched.

    A symbolic link is followed (its target is replaced); a device or pipe is written through.
    """
    shown, path = Path(path), Path(os.path.realpath(path))
    if shown.is_dir():
        raise CnnCostError(f"cannot write {shown}: it is a directory")
    if shown.exists() and not shown.is_file():
        return write_through(shown, content)
    if not path.parent.is_dir():
        problem = "is not a directory" if path.parent.exists() else "does not exist"
        raise CnnCostError(f"cannot write {shown}: directory {path.parent} {problem}")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise CnnCostError(f"cannot write {shown}: {e.strerror}") from None
    try:
        with os.fdopen(fd, **open_mode(content)) as handle:
            handle.write(content)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise CnnCostError(f"cannot write {shown}: {e.strerror}") from None


def emit(tables: Mapping[str, Records], fmt: str, output: str | None = None, data: object = None) -> None:
    """Print the rendered tables, or write them to a file when output is given ('-' is stdout)."""
    text = render(tables, fmt, data)
    if output and output != "-":
        write_atomic(output, text)
    else:
        print(text, end="")
