"""Helpers for the deployment tests: finding the tools, rendering the chart, reading manifests.

The tools (helm, kubernetes-validate, hadolint) come from
scripts/install-deploy-tools.sh; a test that cannot find one fails, with the
command that installs it, rather than skipping.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "helm" / "scalespace"
RELEASE = "t"
NAMESPACE = "scalespace-test"

#: scenario -> values files (relative to the chart); the default values have none
SCENARIOS: dict[str, list[str]] = {
    "default": [],
    "gpu-disabled": ["ci/gpu-disabled-values.yaml"],
    "keda-monitoring": ["ci/keda-monitoring-values.yaml"],
    "external-redis": ["ci/external-redis-values.yaml"],
}


def find_tool(name: str) -> str:
    """The path of a deployment tool: .tools/bin, then the test interpreter's bin, then PATH."""
    for folder in (ROOT / ".tools" / "bin", Path(sys.executable).parent):
        path = folder / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(f"{name} not found in .tools/bin, {Path(sys.executable).parent} or PATH: "
                f"run scripts/install-deploy-tools.sh", pytrace=False)


def run(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=CHART)


@dataclass
class Render:
    """One `helm template` of the chart: the text and its documents."""

    text: str
    docs: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, component: str) -> dict[str, Any]:
        """The one object of this kind whose app.kubernetes.io/component is `component`."""
        found = [d for d in self.of_kind(kind)
                 if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component]
        assert len(found) == 1, f"expected one {kind} for {component}, found {len(found)}"
        return found[0]

    def names(self, kind: str) -> set[str]:
        return {d["metadata"]["name"] for d in self.of_kind(kind)}


def helm_template(helm: str, values: list[str], extra: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [helm, "template", RELEASE, ".", "--namespace", NAMESPACE]
    for v in values:
        cmd += ["-f", v]
    return run(cmd + (extra or []))


def parse(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def container(obj: dict[str, Any]) -> dict[str, Any]:
    """The (single) container of a Deployment or CronJob."""
    spec = pod_spec(obj)
    assert len(spec["containers"]) == 1
    return spec["containers"][0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def env_names(obj: dict[str, Any], prefix: str = "SCALESPACE_") -> list[str]:
    return [e["name"] for e in container(obj).get("env", []) if e["name"].startswith(prefix)]


def env_values(obj: dict[str, Any]) -> dict[str, Any]:
    """name -> literal value, or the valueFrom mapping."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(obj).get("env", [])}
