"""The Dockerfiles: hadolint-clean, multi-stage, non-root, pinned, and installing what pyproject.toml asks for.

No image is built here (no container engine in CI); these checks make the
builds correct by construction: the same pins as the tested environment
(docker/constraints.txt), the project's own extras, the paths the chart mounts.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from deploy_helpers import CHART, ROOT, find_tool, run

DOCKER = ROOT / "docker"
DOCKERFILES = sorted(p.name for p in DOCKER.glob("Dockerfile.*"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
TORCH, TRITON = "2.13.0", "3.7.1"


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in (DOCKER / name).read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue
        buf += line.rstrip()
        if buf.endswith("\\"):
            buf = buf[:-1] + " "
            continue
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def stages(name: str) -> list[dict]:
    """Each stage: its resolved base image, alias and instructions."""
    args = {}
    result: list[dict] = []
    for word, rest in instructions(name):
        if word == "ARG" and not result:
            key, _, default = rest.partition("=")
            args[key] = default
        elif word == "FROM":
            image, _, alias = rest.partition(" AS ")
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
            result.append({"image": image, "alias": alias.strip(), "ins": []})
        else:
            result[-1]["ins"].append((word, rest))
    return result


def build_args(name: str) -> dict[str, str]:
    """The global ARGs and their defaults (what a build without --build-arg uses)."""
    args = {}
    for word, rest in instructions(name):
        if word == "FROM":
            break
        if word == "ARG":
            key, _, default = rest.partition("=")
            args[key] = default
    return args


def pip_installs(name: str) -> list[list[str]]:
    """Each `pip install`'s arguments, build arguments replaced by their defaults."""
    args = build_args(name)
    return [[re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], a) for a in shlex.split(cmd)[2:]]
            for s in stages(name) for w, rest in s["ins"] if w == "RUN"
            for cmd in rest.split("&&") if cmd.split()[:2] == ["pip", "install"]]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_passes(dockerfile: str) -> None:
    out = run([find_tool("hadolint"), "--no-color", str(DOCKER / dockerfile)])
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr


def test_the_three_images_exist() -> None:
    assert DOCKERFILES == ["Dockerfile.api", "Dockerfile.worker-cpu", "Dockerfile.worker-gpu"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_multi_stage_non_root_and_pinned(dockerfile: str) -> None:
    all_stages = stages(dockerfile)
    assert len(all_stages) >= 2, "build tools stay in a build stage"
    for s in all_stages:
        if s["image"] in {x["alias"] for x in all_stages}:
            continue
        repo, _, tag = s["image"].rpartition(":")
        assert repo and tag and tag != "latest" and re.search(r"\d", tag), f"unpinned base {s['image']}"
    final = all_stages[-1]
    users = [rest for w, rest in final["ins"] if w == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), "the final stage runs as a numeric non-root user"
    text = (DOCKER / dockerfile).read_text()
    assert not re.search(r"(?i)(aws_secret|api_token|password)\s*=", text), "no secrets in images"
    assert ("ENTRYPOINT", '["scalespace"]') in final["ins"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_pip_installs_match_pyproject(dockerfile: str) -> None:
    installs = pip_installs(dockerfile)
    assert installs
    torch_spec = next(Requirement(r) for r in PYPROJECT["dependencies"] if r.startswith("torch"))
    extras = PYPROJECT["optional-dependencies"]
    project_installs = 0
    for args in installs:
        assert "--no-cache-dir" in args
        pins = [a for a in args if "==" in a]
        for pin in pins:
            req = Requirement(pin)
            version = Version(next(iter(req.specifier)).version)
            if req.name == "torch":
                assert str(version) == TORCH and version in torch_spec.specifier
            if req.name == "triton":
                assert str(version) == TRITON and f"triton=={TRITON}" in extras["gpu"]
        project = [a for a in args if a.startswith("/src")]
        if project:
            project_installs += 1
            assert args[args.index("--constraint") + 1] == "/tmp/constraints.txt"
            assert "--only-binary=:all:" in args
            wanted = set(re.fullmatch(r"/src\[(.*)\]", project[0]).group(1).split(","))
            assert wanted <= set(extras), f"unknown extras {wanted - set(extras)}"
            assert "service" in wanted and (("gpu" in wanted) == dockerfile.endswith("gpu"))
        elif "--no-deps" in args:
            # the CPU build of torch, alone, from the CPU index
            assert pins == [f"torch=={TORCH}"] and "download.pytorch.org/whl/cpu" in args[args.index("--index-url") + 1]
        else:
            assert args[args.index("--constraint") + 1] == "/tmp/constraints.txt"
    assert project_installs == 1
    if dockerfile.endswith("gpu"):
        assert any(f"triton=={TRITON}" in a for a in installs), "the GPU image pins triton"
        assert stages(dockerfile)[-1]["image"].startswith("nvidia/cuda:") and "-runtime-" in stages(dockerfile)[-1]["image"]
    else:
        assert not any("triton" in " ".join(a) for a in installs)
        assert "cuda" not in stages(dockerfile)[-1]["image"]


def test_constraints_pin_every_project_requirement() -> None:
    lines = [ln for ln in (DOCKER / "constraints.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    pins = {}
    for line in lines:
        name, sep, version = line.partition("==")
        assert sep and version, f"not an exact pin: {line}"
        pins[re.sub(r"[-_.]+", "-", name).lower()] = Version(version)
    requirements = PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"]["service"] \
        + PYPROJECT["optional-dependencies"]["gpu"]
    for text in requirements:
        req = Requirement(text)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"{name} ({text}) is not pinned in docker/constraints.txt: run docker/lock.py"
        assert pins[name] in req.specifier, f"{name}=={pins[name]} does not satisfy {text}"
    assert pins["torch"] == Version(TORCH) and pins["triton"] == Version(TRITON)


def _dockerignored(path: str) -> bool:
    """Docker's rules: a pattern matches the path or a parent folder; '**/' any depth; the last match wins."""
    parts = path.split("/")
    ignored = False
    for pattern in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if pattern.startswith("**/"):
            candidates = ["/".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)]
            pattern = pattern[3:]
        else:
            candidates = ["/".join(parts[:j]) for j in range(1, len(parts) + 1)]
        if any(fnmatch(c, pattern) for c in candidates):
            ignored = not negate
    return ignored


def test_build_context_holds_what_the_dockerfiles_copy_and_nothing_secret() -> None:
    for dockerfile in DOCKERFILES:
        for s in stages(dockerfile):
            for word, rest in s["ins"]:
                if word == "COPY" and not rest.startswith("--from"):
                    for source in rest.split()[:-1]:
                        assert (ROOT / source).exists(), f"{dockerfile}: COPY {source}: missing from the repository"
                        assert not _dockerignored(source), f"{dockerfile}: COPY {source} is excluded by .dockerignore"
    for private in (".venv/bin/python", ".tools/bin/helm", ".git/config", ".env", "tests/conftest.py",
                    "shared/__pycache__/x.pyc", "helm/scalespace/values.yaml"):
        assert _dockerignored(private), f"{private} would be sent to the image build"


def test_image_paths_agree_with_the_chart(render) -> None:
    gpu = {w: rest for s in stages("Dockerfile.worker-gpu")[-1:] for w, rest in s["ins"] if w in ("ENV", "VOLUME")}
    env = dict(re.findall(r"(\w+)=(\S+)", gpu["ENV"]))
    worker = render().get("Deployment", "worker")
    rendered_env = {e["name"]: e.get("value") for e in worker["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TRITON_CACHE_DIR"] == env["SCALESPACE_TRITON_CACHE_DIR"] == rendered_env["TRITON_CACHE_DIR"]
    assert env["TRITON_CACHE_DIR"] in gpu["VOLUME"]
    for dockerfile in DOCKERFILES:
        users = [rest for w, rest in stages(dockerfile)[-1]["ins"] if w == "USER"]
        uid, gid = (int(x) for x in users[-1].split(":"))
        values = yaml.safe_load((CHART / "values.yaml").read_text())["podSecurityContext"]
        assert (values["runAsUser"], values["runAsGroup"]) == (uid, gid)


def test_compose_builds_these_images(render) -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"redis", "s3", "api", "worker"} <= set(services)
    for name, dockerfile in (("api", "Dockerfile.api"), ("worker", "Dockerfile.worker-cpu")):
        build = services[name]["build"]
        assert (DOCKER / build["context"]).resolve() == ROOT and build["dockerfile"] == f"docker/{dockerfile}"
        assert set(services[name]["depends_on"]) == {"redis", "s3"}
        assert services[name]["read_only"] is True and services[name]["cap_drop"] == ["ALL"]
    grace = int(services["worker"]["stop_grace_period"].rstrip("s"))
    assert grace > int(services["worker"]["environment"]["SCALESPACE_WORKER_SHUTDOWN_TIMEOUT_S"])
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert services["s3"]["image"] == "{repository}:{tag}".format(**values["s3"]["bundled"]["image"])
    assert services["redis"]["image"] == "{repository}:{tag}".format(**values["redis"]["bundled"]["image"])


def test_docs_build_the_images_the_chart_runs() -> None:
    docs = (ROOT / "README.md").read_text()
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    images = yaml.safe_load((CHART / "values.yaml").read_text())["images"]
    for key, dockerfile in (("api", "Dockerfile.api"), ("workerGpu", "Dockerfile.worker-gpu"),
                            ("workerCpu", "Dockerfile.worker-cpu")):
        command = f"docker build -f docker/{dockerfile} -t {images[key]['repository']}:{chart['appVersion']} ."
        assert command in docs, f"README.md lacks: {command}"
        assert command in (DOCKER / dockerfile).read_text()
    assert "helm install" in docs and "helm/scalespace" in docs
    assert "scripts/install-deploy-tools.sh" in docs
