"""The layering contract of ``shipmail`` (issue 7): no import cycle among its modules, and no
infrastructure module importing a feature.

Layers (top-level parts of the package):

* infrastructure: :data:`INFRASTRUCTURE` (``shipmail.db.migrations`` excepted: it registers the
  feature tables); it may import only infrastructure;
* composition: :data:`COMPOSITION`, which may import anything;
* features: every other top-level module or package; they may import infrastructure and each
  other, never in a cycle (neither module by module nor package by package);
* inside a feature, its concept modules (:data:`CONCEPTS`: ``schemas``, ``models``, ``sieve``)
  define what the feature is about (the pydantic schema of a concept, its table, its Sieve
  compiler); they import only infrastructure and other concept modules, so any feature may use
  another's concepts: the package-by-package rule counts only imports of operation modules
  (routes, services), which is where features depend on each other's behaviour.

Every ``import`` statement counts wherever it stands, function-level imports included (they used to
hide cycles), and so does ``importlib.import_module("shipmail....")`` with a literal name; imports
under ``if TYPE_CHECKING:`` do not (they never run). Importing ``a.b.c`` also runs the packages
``a.b`` and ``a`` unless the importer is inside them already: those edges count too.

Standard library only (an AST walk) rather than import-linter: its contracts are about named
packages and layers (acyclic_siblings forbids cycles among the children of packages one lists,
each child standing for everything below it), while the rule here is "no cycle between any two
modules of the tree", reported with the file, line and function of every import in the cycle.
``python -m tests.test_layering`` prints the same report.
"""

from __future__ import annotations

import ast
import itertools
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

INFRASTRUCTURE = (
    "shipmail.config",
    "shipmail.ids",
    "shipmail.utc",
    "shipmail.runtime",
    "shipmail.http",
    "shipmail.db",
    "shipmail.auth",
    "shipmail.jmap",
    "shipmail.mailserver",
    "shipmail.sieve",
    "shipmail.jobs",
)
#: Inside infrastructure but allowed to import features.
EXEMPT = ("shipmail.db.migrations",)
COMPOSITION = ("shipmail", "shipmail.app", "shipmail.cli", "shipmail.routes", "shipmail.tasks")
#: Last name part of a feature's concept modules.
CONCEPTS = ("schemas", "models", "sieve")


@dataclass(frozen=True)
class Import:
    """One import of ``target`` by ``source`` at ``path:line`` (inside ``function``, if any)."""

    source: str
    target: str
    path: str
    line: int
    function: str | None
    implicit: bool = False  # the package ``target`` runs because a module inside it was imported

    def __str__(self) -> str:
        where = f" (inside {self.function})" if self.function else ""
        how = "runs the package" if self.implicit else "imports"
        return f"{self.path}:{self.line}{where}: {self.source} {how} {self.target}"


@dataclass
class Graph:
    """Modules of one package and the imports among them (``edges[source][target]`` = first import)."""

    modules: dict[str, Path]
    edges: dict[str, dict[str, Import]] = field(default_factory=dict)

    def targets(self, module: str) -> Iterable[str]:
        return self.edges.get(module, {}).keys()


def module_name(package_dir: Path, path: Path) -> str:
    parts = [package_dir.name, *path.relative_to(package_dir).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(tree: ast.Module, module: str, is_package: bool) -> Iterator[tuple[str, int, str | None]]:
    """``(dotted name, line, enclosing function)`` of every import that runs, at any depth."""

    def walk(node: ast.AST, function: str | None) -> Iterator[tuple[str, int, str | None]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and is_type_checking(child.test):
                for stmt in child.orelse:
                    yield from walk_one(stmt, function)
                continue
            yield from walk_one(child, function)

    def walk_one(node: ast.AST, function: str | None) -> Iterator[tuple[str, int, str | None]]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, function
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # ``a.b`` is module a.b, or a name in module a
                yield base if alias.name == "*" else f"{base}.{alias.name}", node.lineno, function
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in {"import_module", "__import__"})
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value, node.lineno, function
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function = node.name if function is None else f"{function}.{node.name}"
        yield from walk(node, function)

    yield from walk(tree, None)


def build_graph(package_dir: Path) -> Graph:
    """The import graph among the modules under ``package_dir`` (a package directory)."""
    modules = {module_name(package_dir, p): p for p in sorted(package_dir.rglob("*.py"))}
    graph = Graph(modules)
    for source, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        parts = source.split(".")
        own_packages = {".".join(parts[:i]) for i in range(1, len(parts) + is_package)}
        rel = path.relative_to(package_dir.parent).as_posix()
        edges = graph.edges.setdefault(source, {})
        for name, line, function in imported_names(tree, source, is_package):
            # The longest prefix of ``name`` that is one of our modules (``from a import b`` names
            # the module a.b only if there is one), then the packages above it that Python runs
            # first, unless the importer is inside them already.
            prefixes = (".".join(name.split(".")[:i]) for i in range(name.count(".") + 1, 0, -1))
            hits = [m for m in prefixes if m in modules and m not in own_packages and m != source]
            for i, target in enumerate(hits):
                known = edges.get(target)
                if known is None or (known.implicit and i == 0):
                    edges[target] = Import(source, target, rel, line, function, implicit=i > 0)
    return graph


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph.modules:
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph.targets(start))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph.targets(succ)))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def shortest_path(graph: Graph, start: str, goal: set[str], within: set[str] | None = None) -> list[str] | None:
    """Modules from ``start`` to the nearest module in ``goal`` (breadth first), or None."""
    parent: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node in goal and node != start:
            path = [node]
            while (prev := parent[path[-1]]) is not None:
                path.append(prev)
            return path[::-1]
        edges = graph.edges.get(node, {})
        for succ in sorted(edges, key=lambda t: (edges[t].implicit, t)):  # explicit imports first
            if within is not None and succ not in within:
                continue
            if succ not in parent:
                parent[succ] = node
                queue.append(succ)
    return None


def describe(graph: Graph, chain: list[str]) -> str:
    lines = [" -> ".join(chain)]
    lines += [f"    {graph.edges[a][b]}" for a, b in itertools.pairwise(chain)]
    return "\n".join(lines)


def cycles(graph: Graph) -> list[str]:
    """One cycle through every import that lies on a cycle, each printed with its imports."""
    reports: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for component in strongly_connected(graph):
        members = set(component)
        for source in component:
            for target in sorted(graph.targets(source)):
                if target not in members:
                    continue
                back = shortest_path(graph, target, {source}, within=members)
                assert back is not None  # same strongly connected component
                chain = [source, *back]
                ring = chain[:-1]
                key = min(tuple(ring[i:] + ring[:i]) for i in range(len(ring)))
                if key not in seen:
                    seen.add(key)
                    reports.append(describe(graph, chain))
    return reports


def top_level(module: str, package: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else package


def within(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


@dataclass(frozen=True)
class Layers:
    infrastructure: tuple[str, ...]
    composition: tuple[str, ...]
    exempt: tuple[str, ...] = ()
    concepts: tuple[str, ...] = CONCEPTS

    def is_concept(self, module: str) -> bool:
        return self.is_feature(module) and module.rsplit(".", 1)[-1] in self.concepts

    def is_infrastructure(self, module: str) -> bool:
        return within(module, self.infrastructure) and not within(module, self.exempt)

    def is_feature(self, module: str) -> bool:
        return not within(module, self.infrastructure) and module not in self.composition


def layer_violations(graph: Graph, layers: Layers) -> list[str]:
    """Every import by an infrastructure module of a non-infrastructure module that is, or leads
    to, a feature; printed with the chain down to the first feature."""
    features = {m for m in graph.modules if layers.is_feature(m)}
    reports = []
    for source in sorted(graph.modules):
        if not layers.is_infrastructure(source):
            continue
        for target, imp in sorted(graph.edges.get(source, {}).items()):
            if imp.implicit or layers.is_infrastructure(target):  # implicit: reported with the module
                continue
            rest = [target] if target in features else shortest_path(graph, target, features)
            if rest is not None:
                reports.append(describe(graph, [source, *rest]))
    return reports


def concept_violations(graph: Graph, layers: Layers) -> list[str]:
    """Every import by a concept module of a feature module that is not a concept module."""
    reports = []
    for source in sorted(graph.modules):
        if not layers.is_concept(source):
            continue
        for target, imp in sorted(graph.edges.get(source, {}).items()):
            if imp.implicit or not layers.is_feature(target) or layers.is_concept(target):
                continue
            if target not in layers.composition:
                reports.append(describe(graph, [source, target]))
    return reports


def feature_cycles(graph: Graph, package: str, layers: Layers) -> list[str]:
    """Cycles among feature packages: ``a`` imports ``b`` if a module of a imports an operation
    module of b (imports of b's concept modules, and the packages they run, do not count)."""
    features = {top_level(m, package) for m in graph.modules if layers.is_feature(m)}
    packages = Graph({f: graph.modules[f] for f in features if f in graph.modules})
    for source, targets in graph.edges.items():
        a = top_level(source, package)
        for target, imp in targets.items():
            if imp.implicit or layers.is_concept(target):
                continue
            b = top_level(target, package)
            if a != b and a in features and b in features:
                packages.modules.setdefault(a, graph.modules[source])
                packages.modules.setdefault(b, graph.modules[target])
                known = packages.edges.setdefault(a, {}).get(b)
                if known is None or (known.implicit and not imp.implicit):
                    packages.edges[a][b] = imp
    return cycles(packages)


def report(reports: list[str], what: str) -> str:
    return f"{len(reports)} {what}:\n\n" + "\n\n".join(reports)


SHIPMAIL = Layers(INFRASTRUCTURE, COMPOSITION, EXEMPT)


@pytest.fixture(scope="module")
def shipmail_graph() -> Graph:
    return build_graph(ROOT / "shipmail")


def test_no_import_cycle(shipmail_graph: Graph) -> None:
    found = cycles(shipmail_graph)
    assert not found, report(found, "import cycle(s) among shipmail modules")


def test_infrastructure_imports_no_feature(shipmail_graph: Graph) -> None:
    found = layer_violations(shipmail_graph, SHIPMAIL)
    assert not found, report(found, "infrastructure import(s) of features")


def test_concept_modules_import_only_concepts(shipmail_graph: Graph) -> None:
    found = concept_violations(shipmail_graph, SHIPMAIL)
    assert not found, report(found, "concept module import(s) of operation modules")


def test_features_import_each_other_without_cycles(shipmail_graph: Graph) -> None:
    found = feature_cycles(shipmail_graph, "shipmail", SHIPMAIL)
    assert not found, report(found, "cycle(s) among feature packages")


def test_the_checker_sees_shipmail(shipmail_graph: Graph) -> None:
    assert {"shipmail.app", "shipmail.http.errors", "shipmail.rules.routes"} <= shipmail_graph.modules.keys()
    assert "shipmail.rules.routes" in shipmail_graph.targets("shipmail.routes")


# --- self-test on a synthetic package -------------------------------------------------------------


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "pkg"


SYNTHETIC = {
    "pkg/__init__.py": "",
    "pkg/app.py": "from pkg.feat import x\nfrom pkg.infra import a\n",
    "pkg/infra/__init__.py": "",
    "pkg/infra/a.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from pkg.app import App\n\n"
    "def helper():\n    from pkg.feat.x import thing\n    return thing\n",
    "pkg/infra/b.py": "from . import a\n",
    "pkg/infra/c.py": "def boot():\n    import pkg.app\n",
    "pkg/infra/migrations.py": "import pkg.feat.x\n",
    "pkg/feat/__init__.py": "",
    "pkg/feat/x.py": "from pkg.feat import y\nthing = 1\n",
    "pkg/feat/y.py": "async def later():\n    import pkg.feat.x\n",
    "pkg/other/__init__.py": "",
    "pkg/other/z.py": "from ..feat.y import later\n",
    "pkg/feat/w.py": "import importlib\nimportlib.import_module('pkg.other.z')\n",
    "pkg/other/v.py": "from pkg.feat import w\n",
}
SYNTHETIC_LAYERS = Layers(("pkg.infra",), ("pkg", "pkg.app"), exempt=("pkg.infra.migrations",))


def test_checker_catches_a_function_level_cycle(tmp_path: Path) -> None:
    graph = build_graph(write(tmp_path, SYNTHETIC))
    found = cycles(graph)
    assert found == [
        "pkg.feat.x -> pkg.feat.y -> pkg.feat.x\n"
        "    pkg/feat/x.py:1: pkg.feat.x imports pkg.feat.y\n"
        "    pkg/feat/y.py:2 (inside later): pkg.feat.y imports pkg.feat.x"
    ], found
    # TYPE_CHECKING imports do not count: pkg.infra.a -> pkg.app -> pkg.infra.a is no cycle.
    assert "pkg.app" not in graph.targets("pkg.infra.a")


def test_checker_catches_infrastructure_importing_a_feature(tmp_path: Path) -> None:
    graph = build_graph(write(tmp_path, SYNTHETIC))
    found = layer_violations(graph, SYNTHETIC_LAYERS)
    assert found == [
        "pkg.infra.a -> pkg.feat.x\n    pkg/infra/a.py:7 (inside helper): pkg.infra.a imports pkg.feat.x",
        # through the composition: the chain goes on down to the first feature
        "pkg.infra.c -> pkg.app -> pkg.feat.x\n"
        "    pkg/infra/c.py:2 (inside boot): pkg.infra.c imports pkg.app\n"
        "    pkg/app.py:1: pkg.app imports pkg.feat.x",
    ], found  # the exempt pkg.infra.migrations is not reported; pkg.infra.b -> pkg.infra.a is fine


def test_checker_catches_cycles_among_feature_packages(tmp_path: Path) -> None:
    # pkg.other.z -> pkg.feat.y (relative import) and pkg.feat.w -> pkg.other.z (import_module):
    # no module cycle, but the packages pkg.feat and pkg.other import each other.
    graph = build_graph(write(tmp_path, SYNTHETIC))
    assert "pkg.feat.y" in graph.targets("pkg.other.z")
    assert "pkg.other.z" in graph.targets("pkg.feat.w")
    found = feature_cycles(graph, "pkg", SYNTHETIC_LAYERS)
    assert len(found) == 1 and found[0].startswith("pkg.feat -> pkg.other -> pkg.feat"), found


def test_checker_passes_a_clean_package(tmp_path: Path) -> None:
    dropped = {"pkg/feat/y.py", "pkg/infra/a.py", "pkg/infra/c.py", "pkg/feat/w.py"}
    clean = {k: v for k, v in SYNTHETIC.items() if k not in dropped}
    graph = build_graph(write(tmp_path, clean))
    assert cycles(graph) == []
    assert layer_violations(graph, SYNTHETIC_LAYERS) == []
    assert feature_cycles(graph, "pkg", SYNTHETIC_LAYERS) == []


def test_concepts_are_shared_without_package_cycles(tmp_path: Path) -> None:
    # a and b use each other's schemas (no package cycle); b's schemas importing a's service
    # is a concept module depending on behaviour (reported).
    files = {
        "pkg/__init__.py": "",
        "pkg/a/__init__.py": "",
        "pkg/a/schemas.py": "X = 1\n",
        "pkg/a/service.py": "from pkg.b.schemas import Y\n",
        "pkg/b/__init__.py": "",
        "pkg/b/schemas.py": "Y = 2\n",
        "pkg/b/service.py": "from pkg.a import schemas\n",
    }
    graph = build_graph(write(tmp_path, files))
    layers = Layers(("pkg.infra",), ("pkg",))
    assert feature_cycles(graph, "pkg", layers) == []
    assert concept_violations(graph, layers) == []
    files["pkg/b/schemas.py"] = "from pkg.a.service import X\n"
    graph = build_graph(write(tmp_path, files))
    found = concept_violations(graph, layers)
    assert len(found) == 1 and found[0].startswith("pkg.b.schemas -> pkg.a.service"), found


if __name__ == "__main__":
    g = build_graph(ROOT / "shipmail")
    results = [
        report(cycles(g), "import cycle(s) among shipmail modules"),
        report(layer_violations(g, SHIPMAIL), "infrastructure import(s) of features"),
        report(concept_violations(g, SHIPMAIL), "concept module import(s) of operation modules"),
        report(feature_cycles(g, "shipmail", SHIPMAIL), "cycle(s) among feature packages"),
    ]
    print("\n\n".join(results))
    sys.exit(1 if any(not r.startswith("0 ") for r in results) else 0)
