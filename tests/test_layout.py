"""The package's shape: imports run one way (no cycle), the attacks depend on nothing but
NumPy and SciPy, modules stay small, the commands share their model options, and the
README's Python example runs as written."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "probe"
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Inside an ``if TYPE_CHECKING:`` body: never imported at run time."""
    while node in parents:
        parent = parents[node]
        if isinstance(parent, ast.If) and node in parent.body:
            test = parent.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else None
            if name == "TYPE_CHECKING":
                return True
        node = parent
    return False


def _target(name: str) -> str | None:
    """The probe module ``name`` stands for: itself if it is one, else its nearest enclosing module."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str, *, type_checking: bool = False, source: str | None = None) -> dict[str, int]:
    """Every name ``module`` imports, anywhere in it (function-level lazy imports too), with
    its line: absolute names as written, relative ones resolved; for ``from X import y`` the
    name is ``X.y`` when that is a probe module, else ``X``. ``source``: the module's text
    (default: its file)."""
    path = MODULES.get(module)
    text = source if source is not None else path.read_text(encoding="utf-8")
    tree = ast.parse(text, str(path or module))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = module if path is not None and _is_package(module) else module.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if not type_checking and _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.setdefault(alias.name, node.lineno)
            continue
        if node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            origin = ".".join(base + ([node.module] if node.module else []))
        else:
            origin = node.module or ""
        for alias in node.names:
            sub = f"{origin}.{alias.name}"
            found.setdefault(sub if sub in MODULES else origin, node.lineno)
    return found


def import_graph() -> dict[str, dict[str, int]]:
    """probe module -> {probe module it imports: line}."""
    graph = {}
    for module in MODULES:
        edges = {}
        for name, line in imports(module).items():
            target = _target(name) if name == "probe" or name.startswith("probe.") else None
            if target is not None and target != module:
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (a list of modules, the first repeated at the end) per strongly connected
    component that has one (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)

    found = []
    for component in components:
        inside = set(component)
        start = min(component)
        # breadth-first from start back to start, inside the component: a shortest cycle through it
        paths = {start: [start]}
        queue = [start]
        cycle = None
        while queue and cycle is None:
            v = queue.pop(0)
            for w in sorted(graph[v]):
                if w == start:
                    cycle = paths[v] + [start]
                    break
                if w in inside and w not in paths:
                    paths[w] = paths[v] + [w]
                    queue.append(w)
        found.append(cycle)
    return found


def _describe(cycle: list[str], graph) -> str:
    return " -> ".join(
        f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])
    ) + f" -> {cycle[-1]}"


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "d": 4}, "d": {}, "e": {"d": 5}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert "a (line 1) -> b (line 2) -> c (line 3) -> a" == _describe(cycles(graph)[0], graph)
    assert cycles({"a": {"b": 1}, "b": {}}) == []


def test_the_import_reader_sees_lazy_relative_and_only_runtime_imports():
    source = """
import numpy as np
from probe.errors import ProbeError
from . import base
from .search import bisect
from .. import validate

def later():
    from probe.smoothing import noise
    import probe.oracle

if TYPE_CHECKING:
    from probe.engine import Engine
"""
    found = imports("probe.attacks.hsja", source=source)
    assert found == {
        "numpy": 2,
        "probe.errors": 3,
        "probe.attacks.base": 4,
        "probe.attacks.search": 5,
        "probe.validate": 6,
        "probe.smoothing.noise": 9,
        "probe.oracle": 10,
    }
    assert imports("probe.attacks.hsja", source=source, type_checking=True)["probe.engine"] == 13
    # in a package's __init__, "." is the package itself
    assert imports("probe.attacks", source="from .base import Attack\n") == {"probe.attacks.base": 1}
    # on the real tree: a lazy import inside a method, and a package importing its submodules
    graph = import_graph()
    assert "probe.runtime" in graph["probe.cli.options"]
    assert {"probe.cli.attack", "probe.cli.core", "probe.cli.figures"} <= set(graph["probe.cli"])


def test_no_import_cycle():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(_describe(c, graph) for c in found)


ATTACK_ALLOWED = ("numpy", "scipy", "probe.attacks", "probe.errors", "probe.validate")


def test_attacks_import_only_numpy_scipy_and_the_standard_library():
    bad = []
    for module in (m for m in MODULES if m == "probe.attacks" or m.startswith("probe.attacks.")):
        for name, line in imports(module, type_checking=True).items():
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or any(name == a or name.startswith(a + ".") for a in ATTACK_ALLOWED):
                continue
            bad.append(f"{MODULES[module].relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "\n".join(bad)


def test_no_module_over_400_lines():
    long = {
        str(path.relative_to(ROOT)): n
        for path in MODULES.values()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


# --------------------------------------------------------------------------- the command line

MODEL_OPTIONS = ("--model", "--device", "--batch-size", "--layout", "--channels", "--scale", "--mean", "--std",
                 "--size", "--output")
MODEL_COMMANDS = ("info", "predict", "accuracy", "certify", "attack", "bench", "profile", "slice", "bsearch")


def _commands():
    import typer

    from probe.cli import app

    return typer.main.get_command(app).commands


def _option(command, flag: str):
    return next((p for p in command.params if flag in p.opts), None)


def test_model_commands_take_the_same_model_options():
    commands = _commands()
    assert set(MODEL_COMMANDS) <= set(commands)
    missing = {
        name: [flag for flag in MODEL_OPTIONS if _option(commands[name], flag) is None] for name in MODEL_COMMANDS
    }
    assert not any(missing.values()), {k: v for k, v in missing.items() if v}
    # the same option, not only the same name: aliases, default, arity and help text
    def signature(command, flag):
        p = _option(command, flag)
        return sorted(p.opts), p.default, p.multiple, p.nargs, p.is_flag, p.help

    for name in MODEL_COMMANDS:
        for flag in MODEL_OPTIONS:
            assert signature(commands[name], flag) == signature(commands["info"], flag), (name, flag)


# --------------------------------------------------------------------------- the README

README = ROOT / "README.md"


def _readme_python() -> str:
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)
    assert blocks, "README.md has no ```python block"
    return blocks[0]


def test_readme_example_imports_only_the_public_api():
    tree = ast.parse(_readme_python())
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bad += [a.name for a in node.names if a.name.split(".")[0] != "numpy"]
        elif isinstance(node, ast.ImportFrom):
            if node.level or node.module not in ("probe", "numpy"):
                bad.append(f"from {'.' * node.level}{node.module or ''} import ...")
    assert not bad, f"the README example should import only `from probe import ...` and numpy, not {bad}"


def test_readme_example_runs(capsys):
    code = compile(_readme_python(), str(README) + " (first python block)", "exec")
    exec(code, {"__name__": "__readme__"})
    assert capsys.readouterr().out.strip(), "the README example prints its result"
