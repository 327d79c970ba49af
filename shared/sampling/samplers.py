"""Reverse samplers: plain functions with one signature.

    sampler(process, denoiser, u_T, schedule, noise, callback=None, **options) -> u_0

`schedule` is a descending list of process indices (schedule.respace),
`noise(step)` gives this batch's standard normal noise for a process index
(scalespace.noise.NoiseSource, so sample k's noise depends only on
(seed, k, step)), and `callback(StepInfo)` carries progress out; nothing is
printed. The last step returns a mean, without noise.

Each sampler is the step's math: coefficients from the process, the step
itself from scalespace.kernels.dispatch (one fused kernel on a GPU, torch
elsewhere; the dispatch picks). Which processes a sampler applies to is
declared once, in SAMPLERS, and checked by check_sampler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from scalespace import ScalespaceError
from scalespace.denoisers.base import Denoiser
from scalespace.kernels import dispatch
from scalespace.noise import NoiseSource
from scalespace.processes.base import DegradedPrior, LinearGaussianProcess, Process


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


def sample_ancestral(
    process: LinearGaussianProcess,
    denoiser: Denoiser,
    u: torch.Tensor,
    schedule: list[int],
    noise: NoiseSource,
    callback: Callback | None = None,
    clip: bool = True,
) -> torch.Tensor:
    """Ancestral sampling from the Gaussian posterior q(u_s | u_t, u0_hat) (vp, ve, blurring).

    For vp this is the DDPM step with variance beta_tilde. Noise is drawn in the
    process's basis (DCT coefficients are standard normal too: V is orthonormal).
    """
    for k, (t, s) in enumerate(zip(schedule[:-1], schedule[1:])):
        u0_hat = _clip(denoiser.predict_u0(u, t, noise.ids), clip)
        post = process.posterior(t, s)
        u = dispatch.posterior_step(u, u0_hat, post.coef_ut, post.coef_u0, post.var.sqrt(), noise,
                                    s if s > schedule[-1] else None, isotropic=process.isotropic)
        _report(callback, k, schedule, s, u)
    return u


def sample_ddim(
    process: LinearGaussianProcess,
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
        u = dispatch.linear_step(u, u0_hat, coef_ut, coef_u0, c, noise, s if c > 0 and s > schedule[-1] else None)
        _report(callback, k, schedule, s, u)
    return u


def ddim_coefficients(process: LinearGaussianProcess, t: int, s: int, eta: float) -> tuple[float, float, float]:
    """(coef_ut, coef_u0, c) of the DDIM step t -> s: u_s = coef_ut u_t + coef_u0 u0_hat + c z, in float64."""
    a_t, a_s = float(process.alpha(t)), float(process.alpha(s))
    sig_t, sig_s = float(process.sigma(t)), float(process.sigma(s))
    c = eta * float(process.posterior(t, s).var.sqrt())
    g = max(sig_s**2 - c**2, 0.0) ** 0.5
    return g / sig_t, a_s - g * a_t / sig_t, c


#: the heat sampler's rules for the mean of a reverse step t -> s (heat, osmosis), from the denoiser's
#: estimate m = A_s u0_hat of the previous state's clean mean:
#:   ihdm       m itself: inverse heat dissipation (Rissanen et al. 2023), what the one-step objective trains;
#:   posterior  E[u_s | u_t, u_0 = u0_hat] of the Gaussian chain (heat: a u_t + (1 - a^2) m per DCT mode).
REVERSE_MEANS: tuple[str, ...] = ("ihdm", "posterior")
#: ihdm: the mean the heat sampler's noise (delta z in every mode) was designed around, the one learned one-step
#: models and osmosis always used; with the oracle it ends on training images
DEFAULT_REVERSE_MEAN = "ihdm"


def check_reverse_mean(rule: str, process: Process, sampler: str | None = None) -> str:
    """`rule` if it applies to `process` (and its sampler), else ScalespaceError("reverse_mean: ...").

    The rule is the heat sampler's; any other process or sampler takes the default only."""
    if rule not in REVERSE_MEANS:
        raise ScalespaceError(f"reverse_mean: unknown rule {rule!r}; choose one of {', '.join(REVERSE_MEANS)}")
    if rule != DEFAULT_REVERSE_MEAN:
        if not process.prior_needs_data:
            raise ScalespaceError(f"reverse_mean: {rule!r} applies to the heat sampler of heat and osmosis only, "
                                  f"not {process.name!r}; leave it at {DEFAULT_REVERSE_MEAN!r}")
        name = sampler or process.default_sampler
        if name != "heat":
            raise ScalespaceError(f"reverse_mean: {rule!r} applies to the 'heat' sampler only, not {name!r}; "
                                  f"leave it at {DEFAULT_REVERSE_MEAN!r}")
    return rule


def sample_degraded(
    process: DegradedPrior,
    denoiser: Denoiser,
    u: torch.Tensor,
    schedule: list[int],
    noise: NoiseSource,
    callback: Callback | None = None,
    delta: float | None = None,
    reverse_mean: str = DEFAULT_REVERSE_MEAN,
) -> torch.Tensor:
    """The inverse heat dissipation sampler (heat, osmosis): u_s = mean_{t->s} + delta z.

    The chain starts from degraded data plus noise (the process's prior), adds
    delta = 1.25 sigma of fresh noise after every step but the last, and
    returns the last mean. The mean comes from the denoiser's estimate
    m = A_s u0_hat (Denoiser.reverse_mean) by the rule `reverse_mean`
    (REVERSE_MEANS): m itself (ihdm) or the posterior mean through m
    (process.posterior_mean_at), the same for the oracle and learned models.
    When m is A_s of the denoiser's own u0_hat on a DCT-diagonal process (the
    oracle on heat), mean and noise are one fused step.
    """
    if reverse_mean not in REVERSE_MEANS:
        raise ScalespaceError(f"reverse_mean: unknown rule {reverse_mean!r}; choose one of {', '.join(REVERSE_MEANS)}")
    delta = process.delta if delta is None else delta
    spectral = _posterior_reverse_mean(process, denoiser)
    for k, (t, s) in enumerate(zip(schedule[:-1], schedule[1:])):
        step = s if s > schedule[-1] else None
        if spectral is not None:
            if reverse_mean == "posterior":
                post = spectral.posterior(t, s)
                coef_ut, coef_u0 = post.coef_ut, post.coef_u0
            else:
                coef_u0 = spectral.alpha(s)
                coef_ut = torch.zeros_like(coef_u0)
            u = dispatch.posterior_step(u, denoiser.predict_u0(u, t, noise.ids), coef_ut, coef_u0, delta, noise,
                                        step, isotropic=process.isotropic, noise_in_basis=False)
        else:
            m = denoiser.reverse_mean(process, u, t, s, noise.ids)
            if reverse_mean == "posterior":
                m = process.posterior_mean_at(t, s, u, m, noise.ids)
            u = dispatch.add_noise(m, delta, noise, step)
        _report(callback, k, schedule, s, u)
    return u


def sampler_options(fn: Callable[..., torch.Tensor], reverse_mean: str = DEFAULT_REVERSE_MEAN) -> dict:
    """The keyword options a sampler function takes from the job's `reverse_mean` (the heat sampler's alone)."""
    return {"reverse_mean": reverse_mean} if fn is sample_degraded else {}


def _posterior_reverse_mean(process: Process, denoiser: Denoiser) -> LinearGaussianProcess | None:
    """The process when the denoiser's A_s u0_hat comes from its predict_u0 on a DCT-diagonal process (either rule's
    mean is then linear in (u_t, u0_hat) per mode: one fused step), else None."""
    if isinstance(process, LinearGaussianProcess) and type(denoiser).reverse_mean is Denoiser.reverse_mean:
        return process
    return None


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
