"""A user's model: `path/to/file.py:factory` or `package.module:factory`, with `--arg KEY=VALUE` arguments."""
from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from pathlib import Path

from cnncost.errors import CnnCostError
from cnncost.trace.models import ModelSource, one_line


def parse_kwargs(pairs: list[str] | None) -> dict:
    """KEY=VALUE strings as keyword arguments; values are Python literals when they parse, strings otherwise."""
    kwargs = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip().isidentifier():
            raise CnnCostError(f"expected KEY=VALUE for a factory argument, got {pair!r}")
        try:
            kwargs[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key.strip()] = value
    return kwargs


def user_model(target: str, kwargs: dict, channels: int = 3) -> ModelSource:
    """A user's factory, `path/to/file.py:factory` or `package.module:factory`, called with kwargs."""
    where, _, attr = target.rpartition(":")
    if not where or not attr.isidentifier():
        raise CnnCostError(f"expected FILE.py:FACTORY or package.module:FACTORY, got {target!r}")
    module = import_file(where) if where.endswith(".py") or "/" in where else import_package(where)
    factory = getattr(module, attr, None)
    if not callable(factory):
        defined = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                         and getattr(v, "__module__", None) == module.__name__)
        raise CnnCostError(f"{where} has no factory {attr!r}" + (f"; it defines {', '.join(defined)}" if defined else ""))

    return ModelSource(target, lambda: factory(**kwargs), channels=channels, implementation=target)


def import_file(path: str):
    """Import a Python file as a module (its directory on sys.path while it imports)."""
    file = Path(path)
    if not file.is_file():
        raise CnnCostError(f"no such file: {path}")
    spec = importlib.util.spec_from_file_location(f"cnncost_user_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(file.parent.resolve()))
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001
        raise CnnCostError(f"cannot import {path}: {one_line(e)}") from None
    finally:
        sys.path.remove(str(file.parent.resolve()))
    return module


def import_package(name: str):
    """Import package.module by name."""
    try:
        return importlib.import_module(name)
    except Exception as e:  # noqa: BLE001
        raise CnnCostError(f"cannot import {name}: {one_line(e)}") from None


