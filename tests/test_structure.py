"""The shape of the code: no import cycle between cnncost's files (imports inside functions count), no comment
that names an issue or a session, registries that refuse a name twice, and `bottleneck` without torch."""
from __future__ import annotations

import ast
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cnncost"


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules a module imports, anywhere in it (functions too); `from p import m` of a module m
    is an import of p.m, not of p."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def resolve(target: str) -> str | None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        return target or None

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {resolve(a.name) for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + [base]).strip(".")
            found |= {resolve(f"{base}.{a.name}") if f"{base}.{a.name}" in known else resolve(base)
                      for a in node.names}
    return {m for m in found if m and m != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_between_files():
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_one():
    # a -> b -> c -> a, and d alone
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


HISTORY = re.compile(r"\bissue\s*#?\d+|\bH\d[a-z]?\b|\bsession\b|\bround \d+", re.IGNORECASE)


def test_no_comment_names_an_issue_or_a_session():
    found = []
    for path in PACKAGE.rglob("*.py"):
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
        found += [f"{path.name}:{t.start[0]}: {t.string.strip()}" for t in tokens
                  if t.type in (tokenize.COMMENT, tokenize.STRING) and HISTORY.search(t.string)]
    assert found == []


def test_every_registry_refuses_a_name_twice():
    from cnncost.formulas import formula
    from cnncost.specs import register
    from cnncost.trace.ops.registry import handles, handles_function
    import torch.nn.functional as F
    for again in (lambda: formula("relu", category="activation")(lambda s: None),
                  lambda: handles("convolution")(lambda a, o: None),
                  lambda: handles("view")(lambda a, o: None),  # a free op
                  lambda: handles_function(F.local_response_norm)(lambda a, o: None),
                  lambda: register("resnet50", lambda b: None),
                  lambda: register("resnext50", lambda b: None)):  # an alias
        with pytest.raises(ValueError, match="registered twice"):
            again()


def test_every_kind_has_one_category_from_its_registration():
    from cnncost.formulas import CATEGORIES, CATEGORY_OF, FORMULAS, cost
    assert set(CATEGORY_OF) == set(FORMULAS) and set(CATEGORY_OF.values()) <= set(CATEGORIES)
    # the Cost a formula returns carries its registered category
    assert cost("relu", (1, 8)).category == "activation" and cost("conv2d", (1, 3, 8, 8), out_channels=4).category \
        == "conv"


def test_bottleneck_starts_without_torch():
    code = "import sys; from cnncost.cli import run; run(['bottleneck', '-f', 'json']); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "False"
