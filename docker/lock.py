"""Write docker/constraints.txt: exact pins for everything the images install.

The pins are the versions installed in the environment that runs this script
(the one the test suite passed with), for the project's requirements with the
extras the images use and everything those pull in, recursively.

    .venv/bin/python docker/lock.py > docker/constraints.txt

torch is pinned by the Dockerfiles themselves (the CPU images take it from the
PyTorch CPU index, the GPU image from PyPI with its CUDA wheels), so a
`+cpu` local label is dropped here: `torch==2.13.0` matches both builds.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("service", "gpu")
# CUDA wheels come with the GPU torch build and are pinned exactly by its metadata
SKIP = re.compile(r"^(nvidia-|cuda-)")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_requirements(extras: tuple[str, ...] = EXTRAS) -> list[Requirement]:
    """The project's direct requirements: core plus the given extras (pyproject.toml)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


def closure(reqs: list[Requirement]) -> dict[str, str]:
    """name -> installed version for reqs and their dependencies (markers for Linux/3.11)."""
    env = {"sys_platform": "linux", "platform_system": "Linux", "python_version": "3.11"}
    pins: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    todo = [(r, e) for r in reqs if r.marker is None or r.marker.evaluate(env) for e in ("", *r.extras)]
    while todo:
        req, extra = todo.pop()
        name = _canonical(req.name)
        if SKIP.match(name) or (name, extra) in seen:
            continue
        seen.add((name, extra))
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            sys.exit(f"lock.py: {req.name} is not installed here; install the project with its extras first")
        pins[name] = dist.version.split("+")[0]
        for sub in dist.requires or []:
            sub_req = Requirement(sub)
            # extra "" follows the plain requirements; extra e those that `name[e]` adds
            if sub_req.marker is None or sub_req.marker.evaluate({**env, "extra": extra}):
                todo += [(sub_req, e) for e in ("", *sub_req.extras)]
    return pins


def main() -> None:
    pins = closure(project_requirements())
    print("# Exact versions for the images, written by docker/lock.py from the tested environment.")
    print("# Regenerate after changing pyproject.toml:  .venv/bin/python docker/lock.py > docker/constraints.txt")
    for name in sorted(pins):
        print(f"{name}=={pins[name]}")


if __name__ == "__main__":
    main()
