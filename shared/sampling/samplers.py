"""Reverse samplers: plain functions with one signature.

    sampler(process, denoiser, u_T, schedule, noise, callback=None, **options) -> u_0

`schedule` is a descending list of process indices (schedule.respace),
`noise(step)` gives this batch's standard normal noise for a process index
(scalespace.sampling.noise.NoiseSource, so sample k's noise depends only on
(seed, k, step)), and `callback(StepInfo)` carries progress out; nothing is
printed. The last step returns a mean, without noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from scalespace import ScalespaceError
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported for annotations only: processes import the noise module
    from scalespace.denoisers.base import Denoiser
    from scalespace.processes.base import Process
from scalespace.sampling.noise import NoiseSource
from scalespace.kernels import dispatch


@dataclass
class StepInfo:
    """One finished reverse step: `done` of `total`, now at process index `index` with state `u`."""

    done: int
    total: int
    index: int
    u: torch.Tensor


Callback = Callable[[StepInfo], None]


def _clip(u0_hat: torch.Tensor, clip: bool) -> torch.Tensor:
    return u0_hat.clamp(-1.0, 1.0) if clip else u0_hat


def _report(callback: Callback | None, k: int, schedule: list[int], s: int, u: torch.Tensor) -> None:
    if callback is not None:
        callback(StepInfo(done=k + 1, total=len(schedule) - 1, index=s, u=u))


def _step_noise(noise: NoiseSource, step: int | None):
    """The kernels' description of noise(step) (None: no noise), or False when `noise` is not a NoiseSource."""
    if not isinstance(noise, NoiseSource):
        return False
    from scalespace.kernels.philox import StepNoise

    return None if step is None else StepNoise(noise.seed, noise.ids, step)


def _fused_step(process: Process, u: torch.Tensor, u0_hat: torch.Tensor, t: int, s: int,
                noise: NoiseSource, step: int | None, noise_in_basis: bool = True,
                std: float | None = None) -> torch.Tensor | None:
    """The posterior step t -> s in one kernel (shared/kernels) when the dispatch picks Triton, else None.

    Same result as the torch code below it (bit for bit in the interpreter for
    isotropic processes, within float32 rounding of the DCT otherwise).
    """
    if not dispatch.use_triton(u.device) or u.dtype not in (torch.float32, torch.float64):
        return None
    sn = _step_noise(noise, step)
    if sn is False or (not process.isotropic and max(u.shape[-2:]) > 64):
        return None
    post = process.posterior(t, s)
    std = post.var.sqrt() if std is None else std
    if process.isotropic and noise_in_basis:
        return dispatch.reverse_step(u, u0_hat, post.coef_ut, post.coef_u0, std, sn)
    return dispatch.spectral_step(u, u0_hat, post.coef_ut, post.coef_u0, std, sn, noise_in_basis=noise_in_basis)


def sample_ancestral(
    process: Process,
    denoiser: Denoiser,
    u: torch.Tensor,
    schedule: list[int],
    noise: NoiseSource,
    callback: Callback | None = None,
    clip: bool = True,
) -> torch.Tensor:
    """Ancestral sampling from the posterior q(u_s | u_t, u0_hat) of SPEC section 1 (vp, ve, blurring).

    For vp this is the DDPM step with variance beta_tilde. Noise is drawn in the
    process's basis (DCT coefficients are standard normal too: V is orthonormal).
    """
    for k, (t, s) in enumerate(zip(schedule[:-1], schedule[1:])):
        u0_hat = _clip(denoiser.predict_u0(u, t, noise.ids), clip)
        fused = _fused_step(process, u, u0_hat, t, s, noise, s if s > schedule[-1] else None)
        if fused is not None:
            u = fused
        else:
            post = process.posterior(t, s)
            dt, dev = u.dtype, u.device
            mean = post.coef_ut.to(dev, dt) * process.to_basis(u) + post.coef_u0.to(dev, dt) * process.to_basis(u0_hat)
            if s > schedule[-1]:
                mean = mean + post.var.sqrt().to(dev, dt) * noise(s)
            u = process.from_basis(mean)
        _report(callback, k, schedule, s, u)
    return u


def sample_ddim(
    process: Process,
    denoiser: Denoiser,
    u: torch.Tensor,
    schedule: list[int],
    noise: NoiseSource,
    callback: Callback | None = None,
    eta: float = 0.0,
    clip: bool = True,
) -> torch.Tensor:
    """DDIM (Song et al. 2021) for isotropic processes (vp, ve); eta = 0 is deterministic.

    u_s = alpha_s u0_hat + g eps_hat + c z with eps_hat = (u_t - alpha_t u0_hat) / sigma_t,
    g = sqrt(sigma_s^2 - c^2) and c = eta sqrt(posterior var). It is linear in
    (u_t, u0_hat), so it runs as the fused reverse step (scalespace.kernels.reverse_step)
    with coef_ut = g / sigma_t and coef_u0 = alpha_s - g alpha_t / sigma_t
    (coefficients in float64), on the GPU as one kernel with in-kernel noise.
    """
    if eta < 0:
        raise ScalespaceError("eta must be >= 0")
    for k, (t, s) in enumerate(zip(schedule[:-1], schedule[1:])):
        u0_hat = _clip(denoiser.predict_u0(u, t, noise.ids), clip)
        coef_ut, coef_u0, c = ddim_coefficients(process, t, s, eta)
        step = s if c > 0 and s > schedule[-1] else None
        sn = _step_noise(noise, step)
        if sn is not False:  # the fused kernel, or its torch reference (the same expression)
            u = dispatch.reverse_step(u, u0_hat, coef_ut, coef_u0, c, sn)
        else:  # a noise callable other than a NoiseSource
            dt, dev = u.dtype, u.device
            u = torch.tensor(coef_ut, dtype=torch.float64).to(dev, dt) * u + torch.tensor(coef_u0, dtype=torch.float64).to(dev, dt) * u0_hat
            if step is not None:
                u = u + torch.tensor(c, dtype=torch.float64).to(dev, dt) * noise(s)
        _report(callback, k, schedule, s, u)
    return u


def ddim_coefficients(process: Process, t: int, s: int, eta: float) -> tuple[float, float, float]:
    """(coef_ut, coef_u0, c) of the DDIM step t -> s: u_s = coef_ut u_t + coef_u0 u0_hat + c z, in float64."""
    a_t, a_s = float(process.alpha(t)), float(process.alpha(s))
    sig_t, sig_s = float(process.sigma(t)), float(process.sigma(s))
    c = eta * float(process.posterior(t, s).var.sqrt())
    g = max(sig_s**2 - c**2, 0.0) ** 0.5
    return g / sig_t, a_s - g * a_t / sig_t, c


def sample_degraded(
    process: Process,
    denoiser: Denoiser,
    u: torch.Tensor,
    schedule: list[int],
    noise: NoiseSource,
    callback: Callback | None = None,
    delta: float | None = None,
) -> torch.Tensor:
    """The inverse heat dissipation sampler (heat, osmosis): u_s = mean_{t->s} + delta z.

    The chain starts from degraded data plus noise (the process's prior), adds
    delta = 1.25 sigma of fresh noise after every step but the last, and
    returns the last mean.
    """
    delta = getattr(process, "delta", None) if delta is None else delta
    if delta is None:
        raise ScalespaceError(f"sampler 'heat' needs a process with a sampling noise delta, not {process.name!r}")
    for k, (t, s) in enumerate(zip(schedule[:-1], schedule[1:])):
        step = s if s > schedule[-1] else None
        fused = None
        if dispatch.use_triton(u.device) and _default_reverse_mean(process, denoiser):
            # the posterior step with the noise added in pixels: one kernel
            fused = _fused_step(process, u, denoiser.predict_u0(u, t, noise.ids), t, s, noise, step,
                                noise_in_basis=False, std=delta)
        if fused is not None:
            u = fused
            _report(callback, k, schedule, s, u)
            continue
        mean = denoiser.reverse_mean(process, u, t, s, noise.ids)
        sn = _step_noise(noise, step) if step is not None and dispatch.use_triton(mean.device) else False
        if sn:  # "mean + delta z" with the noise drawn in the kernel
            u = dispatch.reverse_step(mean, None, 1.0, 0.0, delta, sn)
        else:
            u = mean + delta * noise(s) if s > schedule[-1] else mean
        _report(callback, k, schedule, s, u)
    return u


def _default_reverse_mean(process: Process, denoiser: Denoiser) -> bool:
    """True when reverse_mean is the posterior mean at predict_u0 (so the fused spectral step applies)."""
    from scalespace.denoisers.base import Denoiser
    from scalespace.processes.base import Process

    return (
        process.spectral
        and type(denoiser).reverse_mean is Denoiser.reverse_mean
        and type(process).reverse_mean is Process.reverse_mean
    )


@dataclass(frozen=True)
class Sampler:
    """A sampler and, declared once, the processes it applies to."""

    fn: Callable[..., torch.Tensor]
    applies_to: Callable[[Process], bool]
    #: what a process must be for it, for the refusal's message
    needs: str


SAMPLERS: dict[str, Sampler] = {
    "ancestral": Sampler(sample_ancestral, lambda p: p.spectral, "a DCT-diagonal process (vp, ve, blurring, heat); use 'heat'"),
    "ddim": Sampler(sample_ddim, lambda p: p.isotropic, "an isotropic process (vp, ve)"),
    "heat": Sampler(sample_degraded, lambda p: p.prior_needs_data, "a process that starts from degraded data (heat, osmosis)"),
}


def check_sampler(name: str | None, process: Process) -> str:
    """The sampler `name` resolves to for `process` (None: the process's default), or ScalespaceError("sampler: ...")."""
    name = name or process.default_sampler
    if name not in SAMPLERS:
        raise ScalespaceError(f"sampler: unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    if not SAMPLERS[name].applies_to(process):
        raise ScalespaceError(f"sampler: {name!r} needs {SAMPLERS[name].needs}, not {process.name!r}")
    return name


def sampler_for(name: str | None, process: Process) -> Callable[..., torch.Tensor]:
    """The sampler function for `name` (default: the process's own), checked against the process."""
    return SAMPLERS[check_sampler(name, process)].fn
