"""The shape of the package, read from its source with ``ast``: no import cycle, no private name imported.

Every ``import`` statement of every module of ``tf_crnn`` counts, wherever it stands (module level or
inside a function: a deferred import still ties the two modules), except those under
``if TYPE_CHECKING:``, which never run. Only imports between ``tf_crnn`` modules make the graph. A
module's parent packages, which Python imports first, are not edges: an ``__init__`` that imports
nothing would otherwise close a cycle with every module below it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "tf_crnn"
SOURCE = Path(__file__).resolve().parents[1] / PACKAGE
#: The one private-named module others may import from (its public names only): helpers shared by all.
SHARED_PRIVATE_MODULES = {f"{PACKAGE}._util"}


def module_name(path: Path) -> str:
    """``tf_crnn/tracking/runs.py`` -> ``tf_crnn.tracking.runs``; a package's ``__init__.py`` -> the package."""
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}


def is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def run_time_imports(tree: ast.AST):
    """The ``Import`` / ``ImportFrom`` nodes of ``tree`` outside ``if TYPE_CHECKING:`` bodies (an ``else`` counts)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and is_type_checking(node.test):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute module name ``from ... import`` reads from, as seen from ``module``."""
    if not node.level:
        return node.module or ""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    base = package.split(".")
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str) -> list[tuple[str, str | None, int]]:
    """``(imported tf_crnn module, name taken from it or None, line)`` for each import of ``module``.

    ``from .pkg import name`` imports the submodule ``pkg.name`` when there is one, else ``name`` from ``pkg``.
    """
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"), str(MODULES[module]))
    found = []
    for node in run_time_imports(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names if alias.name in MODULES]
            continue
        source = absolute(module, node)
        if source not in MODULES:
            continue
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            found.append((submodule, None, node.lineno) if submodule in MODULES else (source, alias.name, node.lineno))
    return found


def import_graph() -> dict[str, set[str]]:
    """Each ``tf_crnn`` module -> the ``tf_crnn`` modules it imports (itself excluded)."""
    return {module: {target for target, _, _ in imports_of(module) if target != module} for module in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None (depth-first search, deterministic order)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_walk_sees_what_is_there():
    """The walk itself: it finds modules, deferred imports and relative imports, and skips TYPE_CHECKING blocks."""
    assert {f"{PACKAGE}", f"{PACKAGE}.trainer", f"{PACKAGE}.tracking.runs", f"{PACKAGE}.cli"} <= set(MODULES)
    graph = import_graph()
    assert f"{PACKAGE}.callbacks" in graph[f"{PACKAGE}.trainer"]  # a module-level relative import
    # cli/train.py imports the experiments inside its command function only.
    assert any(target.startswith(f"{PACKAGE}.experiment") for target in graph[f"{PACKAGE}.cli.train"])
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .trainer import Trainer\n"
                     "else:\n    import json\ndef f():\n    from . import model\n")
    seen = sorted(run_time_imports(tree), key=lambda node: node.lineno)
    assert [(node.lineno, node.names[0].name) for node in seen] == [(1, "TYPE_CHECKING"), (5, "json"), (7, "model")]


def test_cycles_are_found_on_small_graphs():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"b"}}) == ["b", "b"]
    assert cycles({"a": {"b"}, "b": {"a", "c"}, "c": {"d"}, "d": {"c"}, "e": {"a"}}) == [["a", "b", "a"],
                                                                                       ["c", "d", "c"]]


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """The modules ``start`` imports, directly or through others."""
    seen, stack = set(), [start]
    while stack:
        for target in graph[stack.pop()] - seen:
            seen.add(target)
            stack.append(target)
    return seen


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per group of modules that import each other (a strongly connected component), sorted."""
    reach = {start: reachable(graph, start) for start in graph}
    groups = {frozenset(m for m in reach[node] if node in reach[m]) for node in graph if node in reach[node]}
    return sorted(find_cycle({m: graph[m] & group for m in group}) for group in groups)


def test_no_import_cycle_between_tf_crnn_modules():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in found)


@pytest.mark.parametrize("lower, upper", [
    ("callbacks", "trainer"),  # the callbacks see the trainer through callbacks.Training
    ("loader", "convert"),  # both read the formats from model_files; the converter may load, not the reverse
    ("model_files", "loader"),
    ("tracking.urls", "tracking.server"),  # resolve_url, which may start the server, is the server module's
])
def test_one_way_dependencies(lower, upper):
    graph = import_graph()
    assert f"{PACKAGE}.{upper}" not in reachable(graph, f"{PACKAGE}.{lower}")


def test_storing_runs_never_reaches_running_experiments():
    """tracking/ (storage) is below experiment/ (running): no tracking module reaches the experiment package,
    and only experiment/ and the command line import it."""
    graph = import_graph()
    for module in graph:
        if module.startswith(f"{PACKAGE}.tracking"):
            assert not {m for m in reachable(graph, module) if m.startswith(f"{PACKAGE}.experiment")}, module
        if not module.startswith((f"{PACKAGE}.experiment", f"{PACKAGE}.cli")):
            assert not {m for m in graph[module] if m.startswith(f"{PACKAGE}.experiment")}, module


def test_the_callbacks_do_not_know_the_trainer():
    """Not even for type checking: the callbacks see the training through the protocol they define."""
    tree = ast.parse(MODULES[f"{PACKAGE}.callbacks"].read_text(encoding="utf-8"))
    names = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | {
        alias.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
    assert not {"trainer", f"{PACKAGE}.trainer"} & names


def is_private(name: str) -> bool:
    """``_name``, not ``__name__`` (``__version__``, ``__init__`` are public)."""
    return name.startswith("_") and not name.startswith("__")


def test_no_module_imports_another_modules_private_name():
    """``from .x import _y`` reaches into ``x``'s private helpers; ``tf_crnn._util`` is shared, by its public names."""
    offences = []
    for module in MODULES:
        for target, name, line in imports_of(module):
            if is_private(target.rpartition(".")[2]) and target not in SHARED_PRIVATE_MODULES:
                offences.append(f"{MODULES[module]}:{line}: imports the private module {target}")
            if target != module and name is not None and is_private(name):
                offences.append(f"{MODULES[module]}:{line}: imports the private name {name} from {target}")
    assert not offences, "\n".join(offences)
