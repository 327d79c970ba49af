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

Callers never ask which one runs: they call an entry point below (the
samplers' steps, the oracle reduction, the osmosis stencil, the statistics)
and get the kernel's result or the torch one.

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
from typing import Any, Callable, Iterator

import torch

from scalespace import ScalespaceError
from scalespace.noise import NoiseSource
from scalespace.processes.base import DriftDiffusionProcess, Process
from scalespace.processes.osmosis_scheme import Drift

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


def oracle_uses_triton(device: torch.device | str, dtype: torch.dtype) -> bool:
    """Whether the oracle reduction runs its kernel for inputs of `dtype` on `device`.

    float32 inputs take the torch reference (cuBLAS float32 products) unless the
    kernels are forced (SCALESPACE_KERNELS=triton): the kernel keeps full float32
    ("ieee") products, which Triton runs without tensor cores, far slower than
    cuBLAS (bench/README.md); TF32 would lose the stated bound.
    bfloat16/float16 inputs take the kernel (tensor cores).
    """
    if not use_triton(device):
        return False
    return mode() == "triton" or dtype in (torch.bfloat16, torch.float16)


#: training images per chunk of the oracle's torch reference when none is given: on a CPU each
#: pass over a chunk's (B, chunk) scores is one parallel region with a fixed cost (large on a
#: loaded machine), so fewer, larger chunks run faster; memory grows as B x chunk
#: (bench/README.md, `bench/oracle.py`)
ORACLE_CHUNK = 4096
ORACLE_CPU_CHUNK = 16384


def oracle_default_chunk(device: torch.device | str) -> int:
    """The oracle's default chunk on `device`: ORACLE_CPU_CHUNK on a CPU, else ORACLE_CHUNK.

    A function of the device only, never of the batch, so a row's result does not
    depend on the batch it is in."""
    return ORACLE_CPU_CHUNK if torch.device(device).type == "cpu" else ORACLE_CHUNK


def oracle_reduction(query, keys, key_sq, values, inv_var: float, chunk: int | None = None):
    """scalespace.kernels.oracle_reduction: (mean (B, Dv), lse (B,), entropy (B,)), float64.

    The kernel for bfloat16/float16 inputs on a GPU; float32 inputs use the reference
    there unless forced (see oracle_uses_triton). `chunk` (the reference's training
    images per chunk) defaults to oracle_default_chunk(query.device)."""
    if chunk is None:
        chunk = oracle_default_chunk(query.device)
    mod = _ref("oracle_reduction")
    if oracle_uses_triton(query.device, query.dtype) and mod.supported(query, keys, values):
        return kernel("oracle_reduction").oracle_reduction_triton(query, keys, key_sq, values, inv_var, deterministic=deterministic())
    return mod.oracle_reduction_reference(query, keys, key_sq, values, inv_var, chunk)


def osmosis_explicit(u: torch.Tensor, drift: Drift, tau: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """scalespace.kernels.osmosis_stencil: per-image `steps` explicit osmosis steps of size `tau`.

    An osmosis_scheme.ExplicitSteps: what the layers above the kernels give the
    osmosis process (`bind`) and osmosis_scheme.evolve_explicit (`run=`)."""
    mod = _ref("osmosis_stencil")
    if use_triton(u.device) and mod.supported(u):
        return kernel("osmosis_stencil").osmosis_explicit_triton(u, drift, tau, steps, deterministic=deterministic())
    return mod.osmosis_explicit_reference(u, drift, tau, steps)


#: noise as the samplers pass it: a NoiseSource (the kernels can draw it too) or any callable step -> z
Noise = Callable[[int], torch.Tensor]


def _step_noise(noise: Noise, step: int | None):
    """The kernels' description of noise(step): a philox.StepNoise, None (no noise: step None), or False
    when `noise` is not a scalespace.noise.NoiseSource (only torch can draw it then)."""
    if not isinstance(noise, NoiseSource):
        return False
    return None if step is None else kernel("philox").StepNoise(noise.seed, noise.ids, step)


def posterior_step(
    u_t: torch.Tensor, u0_hat: torch.Tensor, coef_ut: torch.Tensor, coef_u0: torch.Tensor, std: torch.Tensor | float,
    noise: Noise, step: int | None, *, isotropic: bool, noise_in_basis: bool = True,
) -> torch.Tensor:
    """One reverse step from the Gaussian posterior's coefficients (ancestral; heat sampler):

        noise_in_basis:  u_s = B^T (coef_ut B u_t + coef_u0 B u0_hat + std z)
        else:            u_s = B^T (coef_ut B u_t + coef_u0 B u0_hat) + std z    (std: the heat sampler's delta)

    B the process's basis (pixels when `isotropic`, else the DCT), z = noise(step)
    (step None: no noise). One kernel launch with in-kernel noise
    (reverse_step for isotropic steps in the basis, spectral_step otherwise)
    when the kernels run and apply (float32/float64; DCT sides up to 64; a
    NoiseSource); else the references' torch code with `noise`'s own draws.
    """
    fused = use_triton(u_t.device) and u_t.dtype in (torch.float32, torch.float64)
    sn = _step_noise(noise, step) if fused else False
    if sn is not False and (isotropic or _ref("dct_operator").supported(u_t)):
        if isotropic and noise_in_basis:
            return reverse_step(u_t, u0_hat, coef_ut, coef_u0, std, sn)
        return spectral_step(u_t, u0_hat, coef_ut, coef_u0, std, sn, noise_in_basis=noise_in_basis)
    ref = _ref("reverse_step").reverse_step_reference if isotropic else _ref("spectral_step").spectral_step_reference
    if not noise_in_basis:
        return add_noise(ref(u_t, u0_hat, coef_ut, coef_u0, 0.0, None), float(std), noise, step)
    return ref(u_t, u0_hat, coef_ut, coef_u0, std, None if step is None else noise(step))


def linear_step(
    u_t: torch.Tensor, u0_hat: torch.Tensor, coef_ut: float, coef_u0: float, std: float, noise: Noise, step: int | None,
) -> torch.Tensor:
    """u_s = coef_ut u_t + coef_u0 u0_hat + std noise(step) with scalar coefficients (DDIM); step None: no noise.

    The fused reverse_step (kernel or reference, with the noise the kernel draws)
    for a NoiseSource; the reference's torch code with `noise`'s draws otherwise."""
    sn = _step_noise(noise, step)
    if sn is not False:
        return reverse_step(u_t, u0_hat, coef_ut, coef_u0, std, sn)
    return _ref("reverse_step").reverse_step_reference(u_t, u0_hat, coef_ut, coef_u0, std, None if step is None else noise(step))


def add_noise(mean: torch.Tensor, std: float, noise: Noise, step: int | None) -> torch.Tensor:
    """mean + std noise(step) (the heat sampler's delta z); step None: mean.

    One reverse_step launch with in-kernel noise when the kernels run (a NoiseSource)."""
    sn = _step_noise(noise, step) if step is not None and use_triton(mean.device) else False
    if sn:
        return reverse_step(mean, None, 1.0, 0.0, std, sn)
    return mean + std * noise(step) if step is not None else mean


def bind(process: Process) -> Process:
    """`process`, given this dispatch's kernels for its own evolution (returned for chaining).

    A drift-diffusion process (osmosis) then runs its explicit steps through
    `osmosis_explicit` (the Triton stencil on a GPU, the same torch loop
    elsewhere) instead of the torch loop it has by itself. Processes sit below
    the kernels and never pick: the layers above bind the processes they build.
    """
    if isinstance(process, DriftDiffusionProcess):
        process.explicit_steps = osmosis_explicit
    return process


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
