"""The built wheel installs one import name, `scalespace`, and every module of the source tree.

`shared`, `worker` and `scheduler` are folder names only: each is also the name
of another distribution on the package index, so installing any of them at the
top level would clash with it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

import import_graph as ig


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # built from a copy: an in-tree build folder could carry modules the tree no longer has
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ig.ROOT / name, src / name)
    for folder in set(ig.package_dirs().values()):
        shutil.copytree(folder, src / folder.relative_to(ig.ROOT), ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(out), str(src)],
                   check=True, capture_output=True, text=True, timeout=300)
    (built,) = out.glob("scalespace-*.whl")
    return built


def test_the_wheel_holds_every_module_under_scalespace(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"scalespace"}, sorted(tops)
    graph = ig.build()
    want = {m.replace(".", "/") + ("/__init__.py" if m in graph.packages else ".py") for m in graph.modules}
    missing = sorted(want - names)
    assert not missing, f"modules of the source tree missing from the wheel: {missing}"
    with zipfile.ZipFile(wheel) as z:
        (entry,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = z.read(entry).decode()
    assert "scalespace = scalespace." in scripts, scripts


def test_a_fresh_environment_gets_only_scalespace_at_the_top_level(wheel, tmp_path):
    env = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env)
    py = env / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    before = set(p.name for p in site.iterdir())
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index",
                    "--disable-pip-version-check", str(wheel)], check=True, capture_output=True, text=True, timeout=300)
    added = set(p.name for p in site.iterdir()) - before
    assert {a for a in added if not a.endswith(".dist-info")} == {"scalespace"}, sorted(added)
    for name in ("shared", "worker", "scheduler", "cli"):
        assert not (site / name).exists() and not (site / f"{name}.py").exists()
    # the package imports from the environment, not from this checkout (no dependencies there: only the stdlib parts)
    got = subprocess.run([str(py), "-I", "-c", "import scalespace, scalespace.ids; print(scalespace.__file__)"],
                         check=True, capture_output=True, text=True, cwd=tmp_path).stdout.strip()
    assert got.startswith(str(site)), got
