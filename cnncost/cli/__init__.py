"""Command line: every command module registers on one app; errors become one line and exit status 2."""
from __future__ import annotations

import errno
import os
import sys

import typer

from cnncost.cli.app import app
from cnncost.errors import CnnCostError
from cnncost.output import INPUTS, ReaderGone
from cnncost import warnings_summary
from cnncost.cli import bottleneck  # noqa: F401  (registers its command)

COMMAND_MODULES = ("catalog", "counting", "training", "bench", "report", "calibrate", "predict", "profile")


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
    warnings_summary.report()  # the model's warnings before the error, which stays the last line
    line = f"cnncost: error: {' '.join(str(message).split())}"
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    try:
        line = line.encode(encoding, "backslashreplace").decode(encoding)
    except LookupError:
        pass
    print(line, file=sys.stderr)
    return 2


def from_user_code(e: BaseException) -> str | None:
    """The one line for a SystemExit, KeyboardInterrupt (without a Ctrl-C) or other BaseException that a user's
    model raised while its forward ran (the fences it left open are closed), or None when no user code ran."""
    userfile = sys.modules.get("cnncost.trace.userfile")
    running = userfile.unwind() if userfile else ""
    line = userfile.escaped(running, e) if running else None
    return f"{line} while it ran" if line else None


def exited(e: SystemExit) -> int:
    """SystemExit inside the app: sys.exit() in a user's model while it ran is one error line naming its file;
    any other (the CLI library's own, on a broken pipe) keeps its status."""
    line = from_user_code(e)
    if line:
        return fail(line)
    if type(sys.stdout).__name__ == "PacifyFlushWrapper":  # the CLI library's exit on a broken pipe
        quiet_stdout()
        return 141
    return e.code if isinstance(e.code, int) else 1


def interrupted(e: KeyboardInterrupt) -> int:
    """Ctrl-C: status 130; a KeyboardInterrupt that a user's model raised itself is one error line."""
    line = from_user_code(e)
    if line:
        return fail(line)
    print("cnncost: interrupted", file=sys.stderr)
    return 130


def internal(e: BaseException) -> int:
    """A bug (or a BaseException from user code): one line, unless CNNCOST_DEBUG asks for the traceback."""
    line = None if isinstance(e, Exception) else from_user_code(e)
    if line:
        return fail(line)
    if os.environ.get("CNNCOST_DEBUG"):
        raise e
    print(f"cnncost: internal error: {type(e).__name__}: {e} (set CNNCOST_DEBUG=1 for the traceback)",
          file=sys.stderr)
    return 1


WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EBADF)


def stdout_failing(e: OSError) -> bool:
    """Whether an OSError with no file name is a failed write of stdout (a full disk, a closed descriptor), as
    when the CLI library prints --help; stdout is then pointed at /dev/null so that the flush at exit is quiet."""
    if e.filename is not None or e.errno not in WRITE_ERRORS:
        return False
    quiet_stdout()
    return True


def quiet_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit after a broken pipe does not fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status instead of exiting."""
    from cnncost.trace.userfile import watch_interrupts
    watch_interrupts()
    INPUTS.clear()  # the files this run reads, which no output may replace
    with warnings_summary.summarising():  # a model's warnings, one line each, after its output or error
        return run_app(argv)


def run_app(argv: list[str] | None) -> int:
    """The CLI's exit status: 0, or the one-line error's 2 (an interrupt 130, a closed pipe 141, a bug 1)."""
    try:
        status = app(args=argv, prog_name="cnncost", standalone_mode=False)
    except typer.TyperException as e:
        return fail(e.format_message())
    except CnnCostError as e:
        return fail(str(e))
    except typer.Abort:
        return fail("interrupted")
    except KeyboardInterrupt as e:
        return interrupted(e)
    except SystemExit as e:
        return exited(e)
    except (BrokenPipeError, ReaderGone):
        quiet_stdout()  # the reader went away (cnncost ... | head): stop quietly
        return 141
    except OverflowError:
        return fail("a count is too large for a 64-bit integer; use a smaller --batch or --size")
    except UnicodeEncodeError as e:
        return fail(f"the console's encoding ({e.encoding}) cannot show {e.object[e.start:e.end]!r}; set "
                    f"PYTHONIOENCODING=utf-8 or write a file with -o FILE")
    except OSError as e:
        if stdout_failing(e):  # the CLI library's own printing (--help) into a full or broken stdout
            return fail(f"cannot write to stdout: {e.strerror or e}")
        return internal(e)
    except BaseException as e:  # noqa: BLE001  (a bug, or GeneratorExit and the like from user code)
        return internal(e)
    if status == 130:  # the CLI library's answer to a KeyboardInterrupt (a Ctrl-C, or user code raising one)
        return interrupted(KeyboardInterrupt())
    return status if isinstance(status, int) else 0


def main() -> None:
    """Console entry point."""
    sys.exit(run())
