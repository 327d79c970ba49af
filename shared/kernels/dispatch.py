"""The one place that picks a Triton kernel or its torch reference.

Rule: Triton on a CUDA device (when triton is installed), the torch reference
everywhere else. Environment variables (read on every call, so tests and
benchmarks can switch them):

    SCALESPACE_KERNELS        auto (default) | triton | reference
                              `triton` forces the kernels, on the CPU too: they
                              then run in the Triton interpreter (TRITON_INTERPRET=1,
                              set here before the first kernel module is imported);
                              slow, for tests and debugging.
    SCALESPACE_DETERMINISTIC  1/true: deterministic kernels: fixed tile
                              configurations (functions of the shapes only), no
                              atomics in any reduction, no fused multiply-add
                              contraction, and a pinned Triton cache directory.
    SCALESPACE_TRITON_CACHE_DIR  the pinned cache directory (default
                              ~/.cache/scalespace/triton-<triton version>); set
                              as TRITON_CACHE_DIR in deterministic mode.

Exception: the oracle reduction in `auto` mode runs its kernel only for
bfloat16/float16 inputs; float32 inputs take the torch reference, whose cuBLAS
float32 products are far faster than Triton's full-precision float32 dots
(`oracle_uses_triton`).

The kernels never autotune (the tile configurations are fixed tables), so
deterministic mode differs from the default only in the reductions
(partials merged in order instead of atomics) and in FMA contraction.
`describe(device)` is what a job records in its manifest.

Kernel modules are imported lazily: whether @triton.jit compiles or
interprets is decided when a module is imported, and the CPU hot path never
needs Triton.
"""

from __future__ import annotations

import importlib
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from scalespace import ScalespaceError

MODE_ENV = "SCALESPACE_KERNELS"
DETERMINISTIC_ENV = "SCALESPACE_DETERMINISTIC"
CACHE_ENV = "SCALESPACE_TRITON_CACHE_DIR"
MODES = ("auto", "triton", "reference")

KERNEL_MODULES = (
    "philox", "reverse_step", "dct_operator", "spectral_step", "oracle_reduction",
    "osmosis_stencil", "moments", "second_moment", "histogram",
)


def mode() -> str:
    """The requested mode: auto, triton or reference."""
    m = os.environ.get(MODE_ENV, "auto").strip().lower() or "auto"
    if m not in MODES:
        raise ScalespaceError(f"{MODE_ENV}={m!r} is not a kernel mode; use one of {', '.join(MODES)}")
    return m


def deterministic() -> bool:
    return os.environ.get(DETERMINISTIC_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def triton_version() -> str | None:
    try:
        from importlib import metadata

        return metadata.version("triton")
    except Exception:  # not installed (the `gpu`/`test` extras bring it)
        return None


def interpreter() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def cache_dir() -> str:
    return os.environ.get(CACHE_ENV) or str(Path.home() / ".cache" / "scalespace" / f"triton-{triton_version()}")


def use_triton(device: torch.device | str) -> bool:
    """Whether work on `device` runs the Triton kernels (raises if forced but impossible)."""
    m = mode()
    if m == "reference":
        return False
    dev = torch.device(device)
    if m == "auto":
        return dev.type == "cuda" and triton_version() is not None
    if triton_version() is None:
        raise ScalespaceError(f"{MODE_ENV}=triton but triton is not installed; pip install 'scalespace[gpu]' or unset it")
    if dev.type not in ("cuda", "cpu"):
        raise ScalespaceError(f"{MODE_ENV}=triton: no kernels for device {dev.type!r}; use auto")
    if dev.type == "cpu" and not interpreter():
        loaded = [name for name in ("_triton",) + KERNEL_MODULES if f"scalespace.kernels.{name}" in sys.modules]
        if loaded:
            raise ScalespaceError(
                f"{MODE_ENV}=triton on the CPU needs TRITON_INTERPRET=1 before the kernels load; set it at start"
            )
        os.environ["TRITON_INTERPRET"] = "1"
    return True


def kernel(name: str):
    """The kernel module `scalespace.kernels.<name>`, imported on first use (deterministic setup first)."""
    if name not in KERNEL_MODULES:
        raise KeyError(name)
    if deterministic() and "TRITON_CACHE_DIR" not in os.environ:
        os.environ["TRITON_CACHE_DIR"] = cache_dir()
    return importlib.import_module(f"scalespace.kernels.{name}")


def describe(device: torch.device | str) -> dict[str, Any]:
    """What a manifest records: which implementation ran and how it was configured (never raises)."""
    try:
        impl = "triton" if use_triton(device) else "reference"
        requested = mode()
    except ScalespaceError:
        impl, requested = "reference", os.environ.get(MODE_ENV, "")
    out: dict[str, Any] = {
        "implementation": impl,
        "mode": requested,
        "deterministic": deterministic(),
        "triton": triton_version(),
    }
    if impl == "triton":
        out["interpreter"] = interpreter()
        out["configs"] = "fixed tables (no autotuning)"
        out["atomics"] = not deterministic()
        out["fma_contraction"] = not deterministic()
        out["oracle_float32"] = "triton" if requested == "triton" else "reference"  # see oracle_uses_triton
        if deterministic():
            out["cache_dir"] = os.environ.get("TRITON_CACHE_DIR", cache_dir())
    return out


@contextmanager
def override(kernels: str | None = None, deterministic: bool | None = None) -> Iterator[None]:
    """Temporarily set SCALESPACE_KERNELS / SCALESPACE_DETERMINISTIC (tests, benchmarks)."""
    saved = {k: os.environ.get(k) for k in (MODE_ENV, DETERMINISTIC_ENV)}
    try:
        if kernels is not None:
            os.environ[MODE_ENV] = kernels
        if deterministic is not None:
            os.environ[DETERMINISTIC_ENV] = "1" if deterministic else "0"
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --- entry points: the kernel when use_triton(device), else the reference ------------------


def reverse_step(u_t, u0_hat, coef_ut, coef_u0, std, noise, clip: bool = False) -> torch.Tensor:
    """scalespace.kernels.reverse_step: coef_ut u_t + coef_u0 clip(u0_hat) + std z (isotropic step)."""
    k = kernel("reverse_step") if use_triton(u_t.device) and u_t.dtype in (torch.float32, torch.float64) else None
    if k is None:
        return _ref("reverse_step").reverse_step_reference(u_t, u0_hat, coef_ut, coef_u0, std, noise, clip)
    return k.reverse_step_triton(u_t, u0_hat, coef_ut, coef_u0, std, noise, clip, deterministic=deterministic())


def spectral_step(u_t, u0_hat, coef_ut, coef_u0, std, noise, clip: bool = False, noise_in_basis: bool = True) -> torch.Tensor:
    """scalespace.kernels.spectral_step: the posterior step in the DCT basis."""
    if use_triton(u_t.device) and _ref("dct_operator").supported(u_t):
        return kernel("spectral_step").spectral_step_triton(
            u_t, u0_hat, coef_ut, coef_u0, std, noise, clip, noise_in_basis, deterministic=deterministic()
        )
    return _ref("spectral_step").spectral_step_reference(u_t, u0_hat, coef_ut, coef_u0, std, noise, clip, noise_in_basis)


def dct_scale(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """scalespace.kernels.dct_operator: idct2(scale * dct2(x))."""
    if use_triton(x.device) and _ref("dct_operator").supported(x):
        return kernel("dct_operator").dct_scale_triton(x, scale, deterministic=deterministic())
    return _ref("dct_operator").dct_scale_reference(x, scale)


def oracle_uses_triton(device: torch.device | str, dtype: torch.dtype) -> bool:
    """Whether the oracle reduction runs its kernel for inputs of `dtype` on `device`.

    float32 inputs take the torch reference (cuBLAS float32 products) unless the
    kernels are forced (SCALESPACE_KERNELS=triton): the kernel keeps full float32
    ("ieee") products, which Triton emulates without tensor cores, 40-80x slower
    than cuBLAS on an H200 (bench/README.md); TF32 would lose the stated bound.
    bfloat16/float16 inputs take the kernel (tensor cores).
    """
    if not use_triton(device):
        return False
    return mode() == "triton" or dtype in (torch.bfloat16, torch.float16)


def oracle_reduction(query, keys, key_sq, values, inv_var: float, chunk: int = 4096):
    """scalespace.kernels.oracle_reduction: (mean (B, Dv), lse (B,), entropy (B,)), float64.

    The kernel for bfloat16/float16 inputs on a GPU; float32 inputs use the reference
    there unless forced (see oracle_uses_triton)."""
    mod = _ref("oracle_reduction")
    if oracle_uses_triton(query.device, query.dtype) and mod.supported(query, keys, values):
        return kernel("oracle_reduction").oracle_reduction_triton(query, keys, key_sq, values, inv_var, deterministic=deterministic())
    return mod.oracle_reduction_reference(query, keys, key_sq, values, inv_var, chunk)


def osmosis_explicit(u: torch.Tensor, drift: Any, tau: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """scalespace.kernels.osmosis_stencil: per-image `steps` explicit osmosis steps of size `tau`."""
    mod = _ref("osmosis_stencil")
    if use_triton(u.device) and mod.supported(u):
        return kernel("osmosis_stencil").osmosis_explicit_triton(u, drift, tau, steps, deterministic=deterministic())
    return mod.osmosis_explicit_reference(u, drift, tau, steps)


def pixel_moments(x: torch.Tensor, center: torch.Tensor | None = None):
    """scalespace.kernels.moments: per-value sum and sum of squares over the batch, float64."""
    if use_triton(x.device):
        return kernel("moments").pixel_moments_triton(x, center, deterministic=deterministic())
    return _ref("moments").pixel_moments_reference(x, center)


def second_moment(x: torch.Tensor, center: torch.Tensor | None = None) -> torch.Tensor:
    """scalespace.kernels.second_moment: sum_b (x_b - c)(x_b - c)^T, (D, D) float64."""
    if use_triton(x.device):
        return kernel("second_moment").second_moment_triton(x, center, deterministic=deterministic())
    return _ref("second_moment").second_moment_reference(x, center)


def histogram(x: torch.Tensor, bins: int = 64, lo: float = -1.0, hi: float = 1.0) -> torch.Tensor:
    """scalespace.kernels.histogram: per-image grey-value counts (B, bins) int64."""
    if use_triton(x.device):
        return kernel("histogram").histogram_triton(x, bins, lo, hi, deterministic=deterministic())
    return _ref("histogram").histogram_reference(x, bins, lo, hi)


def _ref(name: str):
    """A kernel module for its reference (importing it also defines its kernels, harmlessly)."""
    return kernel(name)
