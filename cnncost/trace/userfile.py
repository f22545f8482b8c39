"""A user's model: `path/to/file.py:factory` or `package.module:factory`, with `--arg KEY=VALUE` arguments.

User code runs fenced off from cnncost and from other user files: each file is imported under its own module
name (registered in sys.modules before it runs, as `dataclasses` and pickling need), with its own folder first
on the import path and its own helper modules (two files may each `import layers` from their own folder);
while it is imported, built and run its print() output goes to stderr (stdout stays machine-readable), it sees
a neutral sys.argv, and sys.exit() in it becomes one line naming the file.
"""
from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from cnncost.errors import CnnCostError
from cnncost.output import reading
from cnncost.trace.sources import ModelSource, one_line
from cnncost.warnings_summary import collect

WORDS = {"true": True, "false": False, "none": None}
# A value starting with one of these was meant as a Python literal: if it does not parse, it is an error.
LITERAL_START = tuple("0123456789+-.([{'\"")


class UserExit(CnnCostError):
    """User code called sys.exit() or raised a BaseException of its own (KeyboardInterrupt without a Ctrl-C,
    GeneratorExit, a subclass): reported as one line, never as cnncost's own exit."""


SIGINTS: list[int] = []  # Ctrl-C presses seen (by the handler `watch_interrupts` installs)


def watch_interrupts() -> None:
    """Record real Ctrl-C presses, so that a KeyboardInterrupt that user code raises itself is told apart."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return

    def pressed(signum, frame):
        SIGINTS.append(signum)
        raise KeyboardInterrupt

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, pressed)


def escaped(label: str, e: BaseException) -> str | None:
    """How a BaseException that left user code reads as one line, or None when it is cnncost's to handle (a real
    Ctrl-C, an ordinary Exception)."""
    if isinstance(e, SystemExit):
        return f"{label} called sys.exit({e.code!r})"
    if isinstance(e, Exception) or (isinstance(e, KeyboardInterrupt) and SIGINTS):
        return None
    return f"{label} raised {one_line(e)}"


def parse_value(key: str, value: str):
    """One --arg value: a Python literal, true/false/none in any case, or a bare word as a string."""
    text = value.strip()
    if text.lower() in WORDS:
        return WORDS[text.lower()]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    if not text or text.startswith(LITERAL_START):
        raise CnnCostError(f"--arg {key}={value} is not a Python literal; quote a string as {key}='...'")
    return text


def parse_kwargs(pairs: list[str] | None) -> dict:
    """KEY=VALUE strings as keyword arguments (values as parse_value reads them); a key given twice is an error."""
    kwargs = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise CnnCostError(f"expected KEY=VALUE for a factory argument, got {pair!r}")
        if key in kwargs:
            raise CnnCostError(f"--arg {key} is given twice")
        kwargs[key] = parse_value(key, value)
    return kwargs


def is_file_target(where: str) -> bool:
    """Whether FILE:FACTORY names a file (a path, or something with a suffix that exists) rather than a module."""
    return "/" in where or os.sep in where or where.lower().endswith(".py") or Path(where).is_file()


def user_model(target: str, kwargs: dict, channels: int = 3) -> ModelSource:
    """A user's factory, `path/to/file.py:factory` or `package.module:factory`, called with kwargs."""
    where, _, attr = target.rpartition(":")
    if not where or not attr.isidentifier():
        raise CnnCostError(f"expected FILE.py:FACTORY or package.module:FACTORY, got {target!r}")
    user = UserFile(where) if is_file_target(where) else UserPackage(where)
    module = user.load()
    factory = getattr(module, attr, None)
    if not callable(factory):
        defined = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                         and getattr(v, "__module__", None) == module.__name__)
        listed = f"; it defines {', '.join(defined)}" if defined else ""
        raise CnnCostError(f"{where} has no factory {attr!r}{listed}")

    def build():
        return fenced(user.call(factory, **kwargs), user)

    return ModelSource(target, build, channels=channels, implementation=target)


class UserCode:
    """Where user code comes from, and the fence it runs in."""

    label: str = ""
    folder: Path | None = None

    def __init__(self) -> None:
        self.private: dict[str, ModuleType] = {}  # the helper modules this code imported from its folder
        self._defines: set[str] | None = None

    def load(self) -> ModuleType:
        """The imported module (one line on any failure)."""
        raise NotImplementedError

    @contextlib.contextmanager
    def running(self, imports: bool = True):
        """While user code runs: print() to stderr, a neutral sys.argv, and (when it may import: loading,
        building) its folder and helpers first."""
        argv = sys.argv
        with descriptor_to_stderr(), contextlib.redirect_stdout(sys.stderr), collect(self.label), \
                (self.own_modules() if imports else contextlib.nullcontext()):
            sys.argv = [self.label]
            try:
                yield
            finally:
                sys.argv = argv

    def call(self, function, *args, **kwargs):
        """Call user code inside the fence; sys.exit() or a BaseException of its own (not a real Ctrl-C) becomes
        UserExit, one line naming the code."""
        with self.running():
            try:
                return function(*args, **kwargs)
            except BaseException as e:
                line = escaped(self.label, e)
                if line is None:
                    raise
                raise UserExit(line) from None

    @contextlib.contextmanager
    def own_modules(self):
        """Its folder first on sys.path and its own helper modules in sys.modules (another user file's modules
        of the same name hidden); the helpers it imports are kept apart again afterwards."""
        if self.folder is None:
            yield
            return
        folder = str(self.folder)
        hidden = {n: sys.modules.pop(n) for n in list(sys.modules) if self.shadows(n)}
        sys.modules.update(self.private)
        before = set(sys.modules) - set(self.private)
        sys.path.insert(0, folder)
        try:
            yield
        finally:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)
            for name in [n for n in sys.modules if n not in before]:
                if name in self.private or self.owns(sys.modules[name]):
                    self.private[name] = sys.modules.pop(name)
            sys.modules.update(hidden)

    def owns(self, module) -> bool:
        """Whether a module was loaded from this code's folder (the main module itself excepted)."""
        if self.folder is None or getattr(module, "__name__", "").startswith(MAIN_PREFIX):
            return False
        try:  # modules come in odd shapes (torch.classes has a __path__ that cannot be iterated)
            places = [getattr(module, "__file__", None), *list(getattr(module, "__path__", None) or [])]
            return any(isinstance(p, str) and Path(p).resolve().is_relative_to(self.folder) for p in places)
        except Exception:  # noqa: BLE001 - not a module loaded from a file in the folder
            return False

    def shadows(self, name: str) -> bool:
        """Whether a loaded module of another origin has a top-level name that a .py file or package in this
        code's folder defines (the folder comes first, so it must not be reused); the standard library excepted."""
        return name.partition(".")[0] in self.defines and not self.owns(sys.modules[name])

    @property
    def defines(self) -> set[str]:
        """Top-level module names the folder defines (.py files and packages), standard library excepted."""
        if self._defines is None:
            found = set()
            with contextlib.suppress(OSError):
                for entry in self.folder.iterdir():
                    if entry.suffix == ".py" or (entry / "__init__.py").is_file():
                        found.add(entry.stem if entry.suffix == ".py" else entry.name)
            self._defines = found - set(sys.stdlib_module_names) - set(sys.builtin_module_names)
        return self._defines


@contextlib.contextmanager
def descriptor_to_stderr():
    """File descriptor 1 pointed at stderr too, so that what user code writes below print() (os.write(1, ...), C
    extensions) cannot land in machine-readable stdout; nothing to do where stdout has no descriptor (tests)."""
    try:
        out, err = sys.stdout.fileno(), sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):  # io.UnsupportedOperation is both
        yield
        return
    sys.stdout.flush()
    saved = os.dup(out)
    os.dup2(err, out)
    try:
        yield
    finally:
        os.dup2(saved, out)
        os.close(saved)


MAIN_PREFIX = "cnncost_user_"
FENCES: list = []  # (label, fence) of user forwards in progress, innermost last


class UserFile(UserCode):
    """A Python file, imported under a module name of its own."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.label, self.file = path, Path(path)
        if self.file.is_dir():
            raise CnnCostError(f"{path} is a directory, not a Python file (.py)")
        if not self.file.is_file():
            raise CnnCostError(f"no such file: {path}")
        if self.file.suffix.lower() != ".py":
            raise CnnCostError(f"{path} is not a Python file (.py); a model file is FILE.py:FACTORY")
        self.file = self.file.resolve()
        self.folder = self.file.parent
        reading(self.file, "the model file")

    def module_name(self) -> str:
        """A module name no other file shares: the file's stem and a hash of its absolute path."""
        digest = hashlib.sha1(str(self.file).encode()).hexdigest()[:10]
        stem = "".join(ch if ch.isalnum() else "_" for ch in self.file.stem)
        return f"{MAIN_PREFIX}{stem}_{digest}"

    def load(self) -> ModuleType:
        """Import the file afresh, registered in sys.modules before it runs."""
        name = self.module_name()
        loader = importlib.machinery.SourceFileLoader(name, str(self.file))
        spec = importlib.util.spec_from_file_location(name, self.file, loader=loader)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            self.call(loader.exec_module, module)
        except UserExit as e:
            sys.modules.pop(name, None)
            raise CnnCostError(f"{e} while being imported") from None
        except Exception as e:  # noqa: BLE001 - any failure of user code is one line
            sys.modules.pop(name, None)
            raise CnnCostError(f"cannot import {self.label}: {one_line(e)}") from None
        return module


class UserPackage(UserCode):
    """package.module, found from the current directory first, then sys.path."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.label = name

    def load(self) -> ModuleType:
        """Import package.module by name."""
        cwd = os.getcwd()
        sys.path.insert(0, cwd)
        try:
            return self.call(importlib.import_module, self.label)
        except UserExit as e:
            raise CnnCostError(f"{e} while being imported") from None
        except Exception as e:  # noqa: BLE001
            raise CnnCostError(f"cannot import {self.label}: {one_line(e)}") from None
        finally:
            with contextlib.suppress(ValueError):
                sys.path.remove(cwd)


def fenced(model, user: UserCode):
    """The model with its forward run inside the user fence (hooks, so copies of the model keep them)."""
    import torch
    if isinstance(model, (tuple, list)) and len(model) == 2 and isinstance(model[0], torch.nn.Module):
        fenced(model[0], user)  # a factory's (model, example_inputs): fence the model
        return model
    if not isinstance(model, torch.nn.Module):
        return model

    def enter(*_):
        fence = user.running(imports=False)  # cheap: a forward runs many times when timed
        fence.__enter__()
        FENCES.append((user.label, fence))

    def leave(*_):
        if FENCES:
            FENCES.pop()[1].__exit__(None, None, None)

    model.register_forward_pre_hook(enter)
    model.register_forward_hook(leave, always_call=True)
    return model


def unwind() -> str:
    """Leave every fence a forward left open (sys.exit() skips the forward hooks that close them); the user code
    that was running, innermost, or '' when none was."""
    running = FENCES[-1][0] if FENCES else ""
    while FENCES:
        FENCES.pop()[1].__exit__(None, None, None)
    return running
