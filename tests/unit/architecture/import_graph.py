"""The project's own import graph, read from the source (every import, at module level or inside a function).

Module names are the installed ones: the folders are mapped to `scalespace`,
`scalespace.scheduler`, ... by pyproject.toml's `package-dir`, which this
module reads, so the graph cannot drift from the packaging.
"""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

#: The stack, bottom to top; a module may import only from its own layer or the ones below.
#: Names in one tuple are independent of each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("scalespace.config", "scalespace.ids"),
    ("scalespace.data", "scalespace.storage"),
    ("scalespace.noise",),
    ("scalespace.processes",),
    ("scalespace.kernels",),
    ("scalespace.denoisers",),
    ("scalespace.sampling",),
    ("scalespace.stats",),
    ("scalespace.evaluation",),
    ("scalespace.jobs",),
    ("scalespace.scheduler",),
    ("scalespace.worker",),
    ("scalespace.cli",),
)


def package_dirs(root: Path = ROOT) -> dict[str, Path]:
    """Import name -> folder, from pyproject.toml."""
    conf = tomllib.loads((root / "pyproject.toml").read_text())
    return {name: root / folder for name, folder in conf["tool"]["setuptools"]["package-dir"].items()}


@dataclass
class ImportGraph:
    modules: dict[str, Path] = field(default_factory=dict)
    #: importer -> {imported: [line numbers]}
    edges: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    packages: set[str] = field(default_factory=set)

    def resolve(self, name: str) -> str | None:
        """The project module (or package) `name` names, or the nearest enclosing one; None outside the project."""
        while name:
            if name in self.modules:
                return name
            name = name.rpartition(".")[0]
        return None


def build(root: Path = ROOT) -> ImportGraph:
    dirs = package_dirs(root)
    g = ImportGraph()
    mapped = set(dirs.values())
    for pkg, folder in dirs.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = list(rel.parts)
            # a folder mapped to a package of its own is read under that name
            if any(folder / Path(*parts[:k]) in mapped for k in range(1, len(parts))):
                continue
            is_pkg = parts[-1] == "__init__"
            if is_pkg:
                parts = parts[:-1]
            name = ".".join([pkg, *parts])
            g.modules[name] = path
            if is_pkg:
                g.packages.add(name)
    for name, path in g.modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        base_pkg = name if name in g.packages else name.rpartition(".")[0]
        out: dict[str, list[int]] = {}
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = base_pkg.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    mod = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                # `from m import a, b`: the submodules a and b where they are modules, else m itself
                subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in g.modules]
                targets = subs + ([mod] if len(subs) < len(node.names) else [])
            for t in targets:
                r = g.resolve(t)
                if r is not None and r != name:
                    out.setdefault(r, []).append(node.lineno)
        g.edges[name] = out
    return g


def layer_of(module: str) -> int | None:
    for i, names in enumerate(LAYERS):
        for n in names:
            if module == n or module.startswith(n + "."):
                return i
    return None


def upward_imports(g: ImportGraph) -> list[str]:
    bad = []
    for a, targets in sorted(g.edges.items()):
        la = layer_of(a)
        for b, lines in sorted(targets.items()):
            lb = layer_of(b)
            if la is None or lb is None:
                continue
            same = la == lb and _top(a) != _top(b)
            if lb > la or same:
                bad.append(f"{a} imports {b} (line {', '.join(map(str, sorted(set(lines))))})")
    return bad


def _top(module: str) -> str:
    for names in LAYERS:
        for n in names:
            if module == n or module.startswith(n + "."):
                return n
    return module


def cycles(g: ImportGraph) -> list[list[str]]:
    """Loops among the children of each package (modules and subpackages, each subpackage as one node)."""
    found = []
    for pkg in sorted(g.packages):
        children = {m for m in g.modules if m.rpartition(".")[0] == pkg}
        def child(m: str) -> str | None:
            if not m.startswith(pkg + "."):
                return None
            return pkg + "." + m[len(pkg) + 1:].split(".")[0]
        adj: dict[str, set[str]] = {c: set() for c in children}
        for a, targets in g.edges.items():
            ca = child(a)
            if ca is None:
                continue
            for b in targets:
                cb = child(b)
                if cb is not None and cb != ca:
                    adj.setdefault(ca, set()).add(cb)
        found += _strongly_connected(adj)
    return found


def _strongly_connected(adj: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(adj.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(adj):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    graph = build()
    ups = upward_imports(graph)
    loops = cycles(graph)
    print(f"{len(graph.modules)} modules; {len(ups)} upward imports; {len(loops)} loops")
    for line in ups:
        print("  up:", line)
    for loop in loops:
        print("  loop:", " <-> ".join(loop))
