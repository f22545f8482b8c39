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
    """Print one error line on stderr and give exit status 2."""
    print(f"cnncost: error: {message}", file=sys.stderr)
    return 2


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status instead of exiting."""
    try:
        status = app(args=argv, prog_name="cnncost", standalone_mode=False)
    except typer.TyperException as e:
        return fail(e.format_message().replace("\n", " "))
    except CnnCostError as e:
        return fail(str(e))
    except typer.Abort:
        return fail("interrupted")
    except KeyboardInterrupt:
        print("cnncost: interrupted", file=sys.stderr)
        return 130
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
