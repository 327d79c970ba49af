"""The library is a strict stack, and the service parts depend on it in one direction.

Bottom to top: config and ids; data and storage; noise; processes; kernels;
denoisers; sampling; stats; evaluation; jobs; then the scheduler (API, job
store, client), the worker (which may use the job store) and the command
line. The graph is read from the source, imports inside functions included,
so a function-level import cannot hide an edge.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import import_graph as ig


@pytest.fixture(scope="module")
def graph() -> ig.ImportGraph:
    return ig.build()


def test_every_module_sits_in_a_layer(graph):
    outside = sorted(m for m in graph.modules if ig.layer_of(m) is None and m != "scalespace")
    assert not outside, f"modules in no layer of import_graph.LAYERS: {outside}"


def test_no_import_runs_up_the_stack(graph):
    ups = ig.upward_imports(graph)
    assert not ups, "imports from a lower layer to a higher one:\n" + "\n".join(ups)


def test_no_package_imports_another_in_a_loop(graph):
    loops = ig.cycles(graph)
    assert not loops, "import loops: " + "; ".join(" <-> ".join(loop) for loop in loops)


def test_only_the_installed_names_are_imported():
    """`shared`, `scheduler` and `worker` are folder names, not import names: only `scalespace...` is installed."""
    bad = []
    for folder in ("shared", "scheduler", "worker", "cli", "tests", "bench"):
        for path in sorted((ig.ROOT / folder).rglob("*.py")):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                words = line.strip().split()
                if len(words) >= 2 and words[0] in ("import", "from") and words[1].split(".")[0] in (
                        "shared", "scheduler", "worker", "cli"):
                    bad.append(f"{path.relative_to(ig.ROOT)}:{n}: {line.strip()}")
    assert not bad, "imports by folder name:\n" + "\n".join(bad)


def test_every_package_folder_is_packaged(graph):
    listed = tomllib.loads((ig.ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert sorted(listed) == sorted(graph.packages), "pyproject.toml's packages differ from the package folders"


# --- the checker itself catches what it must ---------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.setuptools]\npackage-dir = { "scalespace" = "lib", "scalespace.scheduler" = "svc" }\npackages = []\n')
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


def test_the_checker_sees_an_upward_import_inside_a_function(tmp_path):
    root = _tree(tmp_path, {
        "lib/__init__.py": "", "lib/processes/__init__.py": "",
        "lib/processes/p.py": "def f():\n    from scalespace.sampling.s import g\n",
        "lib/sampling/__init__.py": "", "lib/sampling/s.py": "from scalespace.processes import p\n",
        "svc/__init__.py": "",
    })
    g = ig.build(root)
    assert ig.upward_imports(g) == ["scalespace.processes.p imports scalespace.sampling.s (line 2)"]
    assert ig.cycles(g) == [["scalespace.processes", "scalespace.sampling"]]


def test_the_checker_sees_a_loop_between_modules_and_the_scheduler_importing_the_worker(tmp_path):
    root = _tree(tmp_path, {
        "lib/__init__.py": "", "lib/jobs/__init__.py": "",
        "lib/jobs/a.py": "from . import b\n", "lib/jobs/b.py": "import scalespace.jobs.a\n",
        "svc/__init__.py": "", "svc/api.py": "from scalespace.worker import tasks\n",
    })
    (root / "pyproject.toml").write_text(
        '[tool.setuptools]\npackage-dir = { "scalespace" = "lib", "scalespace.scheduler" = "svc", '
        '"scalespace.worker" = "wk" }\npackages = []\n')
    (root / "wk").mkdir()
    (root / "wk/__init__.py").write_text("")
    (root / "wk/tasks.py").write_text("from scalespace.scheduler import api\n")
    g = ig.build(root)
    assert ig.cycles(g) == [["scalespace.scheduler", "scalespace.worker"], ["scalespace.jobs.a", "scalespace.jobs.b"]]
    assert ig.upward_imports(g) == ["scalespace.scheduler.api imports scalespace.worker.tasks (line 1)"]
