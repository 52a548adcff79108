"""The package's shape: imports run one way (down the layers of docs/architecture.md, and
no cycle), the attacks depend on nothing but NumPy and SciPy, modules stay small, the
commands share their model options, and the README's Python example runs as written."""

from __future__ import annotations

import ast
import re
import sys
import warnings
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


# --------------------------------------------------------------------------- the layers

#: The layers of docs/architecture.md, top to bottom (the test below checks that its table
#: says the same). Imports run one way, down this list: a module imports only from its own
#: layer or from a layer above it, never from one below it (lazy imports inside functions
#: included). A name ending in "/" is a package and everything in it. `attacks` sits above
#: `engine`: the attacks import nothing of probe but the base layer, and the engine drives
#: them. `recipes` (torch-only export code) imports only the base and input layers, and
#: `probe models export` calls it, so it sits above the interface. The interface is the
#: bottom: the Typer app, the package's lazy facade (`probe/__init__.py`) and `__main__`,
#: which may import anything.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("errors.py", "validate.py", "interrupt.py")),
    ("input", ("spec.py", "data.py", "runtime.py", "autotune.py", "zoo.py")),
    ("defense", ("smoothing/",)),
    ("attacker's view", ("oracle.py",)),
    ("remote", ("remote/",)),
    ("attacks", ("attacks/",)),
    ("scheduling", ("engine.py",)),
    ("workflows", ("runs/",)),
    ("figures", ("experiments/",)),
    ("export", ("recipes/",)),
    ("interface", ("cli/", "load.py", "__init__.py", "__main__.py")),
)

#: KNOWN upward imports, each waiting for its fix (issue #35). The test tolerates exactly these
#: (importer, imported) pairs; whoever removes such an import deletes its entry here too (a
#: left-over entry only warns). Add nothing: fix the import instead.
KNOWN_UPWARD_IMPORTS: dict[tuple[str, str], str] = {}  # (importer, imported): issue; none left


def _entry(entry: str) -> tuple[list[str], bool]:
    """A LAYERS entry as (path parts below probe, whether it is a package with everything in it):
    "runs/" -> (["runs"], True), "errors.py" -> (["errors"], False), "__init__.py" -> ([], False)
    (the package ``probe`` itself)."""
    if entry.endswith("/"):
        return entry[:-1].split("/"), True
    parts = entry.removesuffix(".py").split("/")
    return ([] if parts == ["__init__"] else parts), False


def _layer_of(module: str, layers=LAYERS) -> int | None:
    """Index in ``layers`` of ``module``'s layer (the longest matching entry), None if none."""
    rel = module.split(".")[1:]
    best: tuple[int, int] | None = None
    for index, (_, entries) in enumerate(layers):
        for parts, package in map(_entry, entries):
            hit = rel[: len(parts)] == parts if package else rel == parts
            if hit and (best is None or len(parts) > best[1]):
                best = (index, len(parts))
    return None if best is None else best[0]


def upward_imports(graph: dict[str, dict[str, int]], layers=LAYERS) -> list[tuple[str, str, int]]:
    """(importer, imported, line) for every edge of ``graph`` that runs up the list of layers."""
    found = []
    for module, edges in sorted(graph.items()):
        here = _layer_of(module, layers)
        for target, line in sorted(edges.items()):
            there = _layer_of(target, layers)
            if here is not None and there is not None and there > here:
                found.append((module, target, line))
    return found


def test_the_direction_finder_finds_a_planted_upward_import():
    layers = (("low", ("errors.py",)), ("mid", ("runs/",)), ("top", ("cli/", "__init__.py")))
    graph = {
        "probe.errors": {},
        "probe.runs.a": {"probe.errors": 3, "probe.runs.b": 4},
        "probe.runs.b": {"probe.cli.x": 9},  # runs up the list
        "probe.cli.x": {"probe.runs.a": 1, "probe": 2},
        "probe": {},
    }
    assert upward_imports(graph, layers) == [("probe.runs.b", "probe.cli.x", 9)]
    assert _layer_of("probe", layers) == 2 and _layer_of("probe.runs", layers) == 1
    assert _layer_of("probe.errors", layers) == 0 and _layer_of("probe.other", layers) is None


def test_every_module_has_a_layer():
    missing = [m for m in MODULES if _layer_of(m) is None]
    assert not missing, f"modules in no layer of LAYERS (add them there and to docs/architecture.md): {missing}"


def test_imports_run_down_the_layers():
    graph = import_graph()
    found = upward_imports(graph)
    names = [name for name, _ in LAYERS]
    bad = [
        f"{MODULES[a].relative_to(ROOT)}:{line} imports {b} "
        f"({names[_layer_of(a)]} -> {names[_layer_of(b)]}, a layer below it)"
        for a, b, line in found
        if (a, b) not in KNOWN_UPWARD_IMPORTS
    ]
    assert not bad, "imports that run up the layers of docs/architecture.md:\n" + "\n".join(bad)
    left = sorted(set(KNOWN_UPWARD_IMPORTS) - {(a, b) for a, b, _ in found})
    if left:
        warnings.warn(f"KNOWN_UPWARD_IMPORTS entries that are fixed now (delete them): {left}", stacklevel=1)


ARCHITECTURE = ROOT / "docs" / "architecture.md"


def test_architecture_page_lists_the_same_layers():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text.split("## The layers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| layer")]
    documented = tuple(
        (cells[0], tuple(re.findall(r"`([^`]+)`", cells[1])))
        for cells in ([c.strip() for c in row.strip("|").split("|")] for row in rows)
    )
    assert documented == LAYERS, "docs/architecture.md's table of layers and LAYERS disagree"


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
