"""Render tables as rich text, JSON, CSV or markdown, and write files atomically (never half-written)."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

from cnncost.errors import CnnCostError
from cnncost.units import Unit, human

FORMATS = ("table", "json", "csv", "md")
EXTENSIONS = {".json": "json", ".csv": "csv", ".md": "md", ".markdown": "md"}
COUNT_WORDS = ("macs", "flops", "params", "activations", "bytes", "adds", "buffers", "weights")

Records = list[dict]


def check_format(fmt: str) -> str:
    """The format name in lower case, or a one-line error listing the choices."""
    if not isinstance(fmt, str) or fmt.strip().lower() not in FORMATS:
        raise CnnCostError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt.strip().lower()


def format_for(fmt: str | None, output: str | None) -> str:
    """The format asked for (any case), else the one an output file's extension names (.json, .csv, .md), else
    the table."""
    if fmt is not None:
        return check_format(fmt)
    suffix = Path(output).suffix.lower() if output and output != "-" else ""
    return EXTENSIONS.get(suffix, "table")


def read_only(path: Path) -> bool:
    """Whether a file may not be written: no write permission for us, or no write bit at all (as root too)."""
    return not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222


INPUTS: dict[str, str] = {}  # real path -> what it is, of every file this command reads (never overwritten)


def reading(path: str | os.PathLike, what: str) -> None:
    """Remember a file this command reads (a model file, a CSV), so that no output replaces it."""
    INPUTS[os.path.realpath(path)] = what


def check_output(path: str) -> str:
    """An --output path that can be written, checked before any work: not empty, not a directory (nor ending in
    '/'), not a read-only file, not a file this command reads, not a loop of links, in a folder that exists and
    takes new files; '-' is stdout, devices and pipes are written through."""
    if path == "-":
        return path
    if not path.strip():
        raise CnnCostError("--output needs a file name ('-' for stdout)")
    try:
        return writable(path)
    except OSError as e:  # a name too long, a loop of symbolic links, ...
        raise CnnCostError(f"cannot write {path}: {e.strerror or e}") from None


def writable(path: str) -> str:
    """check_output's checks (OSError where the path itself cannot be looked at)."""
    shown = Path(path)
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):  # a new file (or a link to one) is fine
        os.stat(path)  # raises for a loop of links or a name too long
    real = os.path.realpath(path)
    if real in INPUTS:
        raise CnnCostError(f"cannot write {path}: it is {INPUTS[real]} this command reads")
    if shown.is_dir():
        raise CnnCostError(f"cannot write {path}: it is a directory")
    if path.endswith(("/", os.sep)):
        raise CnnCostError(f"cannot write {path}: a file name cannot end with '/'")
    if shown.exists() and not shown.is_file():
        return path
    if shown.is_file() and read_only(shown):
        mode = stat.S_IMODE(shown.stat().st_mode)
        raise CnnCostError(f"cannot write {path}: the file is read-only (mode {mode:04o})")
    folder = Path(os.path.realpath(path)).parent
    if not folder.is_dir():
        problem = "is not a directory" if folder.exists() else "does not exist"
        raise CnnCostError(f"cannot write {path}: directory {folder} {problem}")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{shown.name}.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise CnnCostError(f"cannot write {path}: {e.strerror}") from None
    return path


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


def render(tables: Mapping[str, Records], fmt: str, data: object = None, ascii_only: bool = False) -> str:
    """Text of tables in a format (checked where it was given): rich table, JSON (data, or the tables), CSV (the
    first table), markdown."""
    if fmt == "json":
        return json.dumps(tables if data is None else data, indent=2) + "\n"
    if fmt == "csv":
        return to_csv(next(iter(tables.values()), []))
    if fmt == "md":
        from tabulate import tabulate
        return "\n".join(f"### {title}\n\n{tabulate(humanize(rows), headers='keys', tablefmt='github')}\n"
                         for title, rows in tables.items())
    return to_rich(tables, ascii_only=ascii_only)


def to_csv(rows: Records) -> str:
    """Rows as CSV with a header, exact numbers."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def terminal_width() -> int:
    """The width tables are drawn for: COLUMNS when set (a positive integer, else a one-line error), the
    terminal's, or 160 when not on a terminal."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns:
        if not columns.isdigit() or int(columns) < 1:
            raise CnnCostError(f"COLUMNS must be a positive whole number of characters, got {columns!r}")
        return int(columns)
    return shutil.get_terminal_size((160, 24)).columns


def can_encode(text: str, stream=None) -> bool:
    """Whether a stream (default stdout) can write text without an encoding error."""
    stream = stream or sys.stdout
    if getattr(stream, "errors", "strict") not in ("strict", None):
        return True
    try:
        text.encode(getattr(stream, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def least_widths(rows: Records, shown: Records) -> dict[str, int]:
    """The narrowest each column may be: numbers never cut (header or widest cell), text folding at 24."""
    widths = {}
    for column in (rows[0] if rows else {}):
        natural = max(len(column), *(len(r[column]) for r in shown))
        widths[column] = natural if is_number(rows[0][column]) else min(natural, 24)
    return widths


def is_number(value) -> bool:
    """An int or float (a numeric column, right-aligned and never cut)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def essential(column: str, first: str) -> bool:
    """Columns a narrow table keeps: the first (the name) and the counts that are the point (MACs, params)."""
    return column == first or column == "kind" or any(w in column for w in ("macs", "flops", "params", "value"))


def fitting(widths: dict[str, int], width: int) -> list[str]:
    """The columns to show in `width` characters: the optional ones left out from the right until they fit, an
    `error` column last (without it a failed row is blank)."""
    columns = list(widths)
    optional = sorted((c for c in reversed(columns) if not essential(c, columns[0])), key=lambda c: c == "error")
    for column in optional:
        if table_width([widths[c] for c in columns]) <= width:
            break
        columns.remove(column)
    return columns


def table_width(column_widths: list[int]) -> int:
    """Characters a rich table takes: its columns, one space either side of each, and the borders."""
    return sum(column_widths) + 3 * len(column_widths) + 1


def to_rich(tables: Mapping[str, Records], width: int | None = None, ascii_only: bool = False) -> str:
    """Tables drawn by rich: numbers right-aligned with metric prefixes and never cut; long text folds. In a
    narrow terminal the less important columns are left out (named under the table)."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    width = terminal_width() if width is None else width
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    for title, rows in tables.items():
        shown = [{k: "" if v is None else str(v) for k, v in r.items()} for r in humanize(rows)]
        widths = least_widths(rows, shown)
        columns = fitting(widths, width)
        left_out = [c for c in widths if c not in columns]
        caption = (f"{len(left_out)} column(s) left out to fit {width} characters: {', '.join(left_out)} "
                   f"(widen the terminal, or use -f md, csv or json)") if left_out else None
        table = Table(title=escape(title), title_justify="left", caption=caption and escape(caption),
                      caption_justify="left", box=box.ASCII2 if ascii_only else box.HEAVY_HEAD)
        for column in columns:  # text is shown as it is: '[3x3 64] x2' is not markup
            if is_number(rows[0][column]):
                table.add_column(escape(column), justify="right", no_wrap=True, min_width=widths[column])
            else:
                table.add_column(escape(column), overflow="fold", min_width=widths[column])
        for row in shown:
            table.add_row(*(escape(row[c]) for c in columns))
        console.width = max(width, table_width([c.min_width or 0 for c in table.columns]))
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
    """Write straight into a device or pipe (/dev/stdout, a FIFO), or in place into a file with other hard links."""
    try:
        with open(path, **open_mode(content)) as handle:
            handle.write(content)
    except OSError as e:
        raise CnnCostError(f"cannot write {path}: {e.strerror}") from None


def write_atomic(path: str | os.PathLike, content: str | bytes) -> None:
    """Write text or bytes to path via a temporary file and rename: the file is whole or untouched.

    The target is one `writable` (check_output) has accepted, or a file in a folder cnncost made. A symbolic link
    is followed (its target is replaced); a device or pipe is written through; an existing file keeps its mode,
    and one with other hard links is rewritten in place so that they all see the new text.
    """
    shown, path = Path(path), Path(os.path.realpath(path))
    if shown.exists() and not shown.is_file():
        return write_through(shown, content)
    existing = path.stat() if path.is_file() else None
    if existing and existing.st_nlink > 1:
        return write_through(shown, content)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise CnnCostError(f"cannot write {shown}: {e.strerror}") from None
    try:
        with os.fdopen(fd, **open_mode(content)) as handle:
            handle.write(content)
        os.chmod(tmp, stat.S_IMODE(existing.st_mode) if existing else 0o666 & ~current_umask())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise CnnCostError(f"cannot write {shown}: {e.strerror}") from None


def emit(tables: Mapping[str, Records], fmt: str, output: str | None = None, data: object = None) -> None:
    """Print the rendered tables, or write them to a file when output is given ('-' is stdout). A console that
    cannot show box-drawing characters gets ASCII tables; one that cannot show the text is a one-line error."""
    if output and output != "-":
        write_atomic(check_output(output), render(tables, fmt, data))
        return
    text = render(tables, fmt, data, ascii_only=not can_encode("\u2501\u2503"))
    to_stdout(text)


class ReaderGone(Exception):
    """Stdout is a pipe whose reader went away (`cnncost ... | head`): stop quietly (not an OSError, which the CLI
    library would turn into exit status 1)."""


def to_stdout(text: str) -> None:
    """Print text on stdout (flushed, so a failure shows here); a one-line error when stdout is closed, full, or
    its encoding cannot show the text."""
    if sys.stdout is None:
        raise CnnCostError("stdout is closed; write a file with -o FILE")
    if not can_encode(text):
        bad = next(ch for ch in text if not can_encode(ch))
        encoding = getattr(sys.stdout, "encoding", "?")
        raise CnnCostError(f"the console's encoding ({encoding}) cannot show {bad!r} in the output; set "
                           f"PYTHONIOENCODING=utf-8 or write a file with -o FILE")
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise ReaderGone() from None
    except (OSError, ValueError) as e:  # ValueError: a closed file
        raise CnnCostError(f"cannot write to stdout: {getattr(e, 'strerror', None) or e}") from None
