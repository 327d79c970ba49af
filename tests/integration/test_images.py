"""The images, built and run: scripts/test-images.sh end to end.

The script builds the API, CPU worker and GPU worker build stages, runs the
stack of docker/compose.yaml in containers, submits a job over HTTP and checks
its artifacts against the same spec run embedded, the hardening the chart
declares, the worker's liveness file, its requeue on SIGTERM, and the kernels'
ahead-of-time compilation inside the GPU image. It needs podman (or docker
with a running engine); scripts/bootstrap.sh installs podman, runc and
debootstrap.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "test-images.sh"


def _engine() -> str | None:
    if shutil.which("podman"):
        return "podman"
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0:
        return "docker"
    return None


@pytest.mark.skipif(_engine() is None, reason="no container engine: neither podman nor a running docker engine")
def test_images_build_and_run() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["SCALESPACE_VENV"] = str(Path(sys.executable).parent.parent)
    out = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=45 * 60)
    report = out.stdout + out.stderr[-8000:]
    assert out.returncode == 0, report
    checks = [line for line in out.stdout.splitlines() if line.startswith("check: ")]
    text = "\n".join(checks)
    pod = yaml.safe_load((ROOT / "helm" / "scalespace" / "values.yaml").read_text())["podSecurityContext"]
    user = f"{pod['runAsUser']}:{pod['runAsGroup']}"
    for expected in (
        "localhost/scalespace-images/api:0",
        "localhost/scalespace-images/worker-cpu:0",
        "CPU torch",
        "redis healthy", "s3 healthy", "api healthy",
        "sample job over HTTP succeeded",
        "samples.npz",
        f"api runs as {user}",
        f"worker runs as {user}",
        "read-only root filesystem",
        "worker liveness: heartbeat file",
        "SIGTERM: the worker stopped",
        "requeued its running job",
        "bench/aot.py compiled every kernel",
    ):
        assert expected in text, f"missing check {expected!r}:\n{report}"
    assert "identical to the embedded run" in text, report
