"""Command line: every command module registers on one app; errors become one line and exit status 2."""
from __future__ import annotations

import os
import sys

import typer

from cnncost.cli.app import app
from cnncost.errors import CnnCostError
from cnncost.cli import bottleneck  # noqa: F401  (registers its command)

COMMAND_MODULES = ("models", "trace", "train", "bench", "report")


def _register_optional() -> None:
    """Import the command modules present (each registers its commands); none imports torch at import."""
    import importlib
    for module in COMMAND_MODULES:
        try:
            importlib.import_module(f"cnncost.cli.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"cnncost.cli.{module}":
                raise


_register_optional()


def fail(message: str) -> int:
    """Print one error line on stderr (whatever its encoding can show) and give exit status 2."""
    line = f"cnncost: error: {' '.join(str(message).split())}"
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    try:
        line = line.encode(encoding, "backslashreplace").decode(encoding)
    except LookupError:
        pass
    print(line, file=sys.stderr)
    return 2


def exited(e: SystemExit) -> int:
    """SystemExit inside the app: sys.exit() in a user's model while it ran is one error line naming its file;
    any other (the CLI library's own, on a broken pipe) keeps its status."""
    userfile = sys.modules.get("cnncost.trace.userfile")
    running = userfile.unwind() if userfile else ""
    if running:
        return fail(f"{running} called sys.exit({e.code!r}) while it ran")
    return e.code if isinstance(e.code, int) else 1


def quiet_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit after a broken pipe does not fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status instead of exiting."""
    try:
        status = app(args=argv, prog_name="cnncost", standalone_mode=False)
    except typer.TyperException as e:
        return fail(e.format_message())
    except CnnCostError as e:
        return fail(str(e))
    except typer.Abort:
        return fail("interrupted")
    except KeyboardInterrupt:
        print("cnncost: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:
        return exited(e)
    except BrokenPipeError:
        quiet_stdout()  # the reader went away (cnncost ... | head): stop quietly
        return 141
    except OverflowError:
        return fail("a count is too large for a 64-bit integer; use a smaller --batch or --size")
    except UnicodeEncodeError as e:
        return fail(f"the console's encoding ({e.encoding}) cannot show {e.object[e.start:e.end]!r}; set "
                    f"PYTHONIOENCODING=utf-8 or write a file with -o FILE")
    except Exception as e:  # noqa: BLE001  (a bug: one line unless CNNCOST_DEBUG asks for the traceback)
        if os.environ.get("CNNCOST_DEBUG"):
            raise
        print(f"cnncost: internal error: {type(e).__name__}: {e} (set CNNCOST_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1
    return status if isinstance(status, int) else 0


def main() -> None:
    """Console entry point."""
    sys.exit(run())
