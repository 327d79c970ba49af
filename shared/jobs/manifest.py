"""What a manifest records about where and how a job ran."""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import torch

import scalespace

PACKAGES = ("torch", "numpy", "pydantic", "triton", "safetensors", "scikit-learn", "celery", "boto3")


def package_versions() -> dict[str, str]:
    """The versions of the packages this process runs with (a fresh dict; read once per process: the
    modules loaded do not change while it runs, and reading the metadata costs tens of ms)."""
    return dict(_package_versions())


@lru_cache(maxsize=1)
def _package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


@lru_cache(maxsize=1)
def code_version() -> str:
    """The package version, plus the git commit when running from a checkout (asked once per process: the
    code it runs is the code it loaded)."""
    v = scalespace.__version__
    root = Path(__file__).resolve().parents[2]
    if (root / ".git").exists():
        try:
            rev = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                capture_output=True, text=True, timeout=5, check=False,
            ).stdout.strip()
            if rev:
                v += f"+g{rev}"
        except (OSError, subprocess.SubprocessError):
            pass
    return v


def device_info(device: torch.device) -> dict[str, str]:
    """The device a job ran on; with the package versions it tells which kernels, hence which last bits."""
    if device.type == "cuda":
        return {"type": "cuda", "name": torch.cuda.get_device_name(device), "cuda": str(torch.version.cuda)}
    # the vector instruction set torch's CPU kernels use (DEFAULT, AVX2, AVX512, ...)
    return {"type": "cpu", "name": platform.processor() or platform.machine(),
            "capability": torch.backends.cpu.get_cpu_capability()}
