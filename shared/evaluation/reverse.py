"""Reverse-process properties R1 to R4 (SPEC section 3), run with a denoiser (the oracle by default).

R1 compares the sampler's start state with the forward marginal at T built
from the same noise (so only the prior's approximation is measured, not
sampling noise); R2 restarts the chain half way from its own state and must
reproduce the rest exactly; R3 is the closed-form per-step conditional
entropy N/2 ln(2 pi e var_step) along the full chain; R4 compares the final
samples with the data against the sampling floor of as many data images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from scalespace.denoisers.base import Denoiser
from scalespace.evaluation.check import Check
from scalespace.evaluation.forward import F4_TOL, monotone
from scalespace.noise import NoiseSource, Stream, uniform_int
from scalespace.processes.base import DegradedPrior, LinearGaussianProcess, Process
from scalespace.sampling.pipeline import start_state
from scalespace.sampling.samplers import StepInfo, sampler_for
from scalespace.sampling.schedule import respace
from scalespace.stats.frechet import FrechetReference, fd_moments, second_moment
from scalespace.stats.moments import Moments

R1_TOL = F4_TOL
R2_TOL = 1e-6
R3_SLACK = 1e-9
#: final samples may sit this many times farther (Fréchet) from the data than as many data images do
R4_RATIO = 3.0
#: random subsets of the data averaged for the sampling floor of R4
R4_FLOOR_DRAWS = 8


@dataclass
class ReverseRun:
    """The samples of one reverse run and what the checks need from it."""

    samples: torch.Tensor
    prior: torch.Tensor
    schedule: list[int]
    #: the sampler's name (ancestral, ddim, heat)
    sampler: str


def _moments(x: torch.Tensor) -> Moments:
    return Moments.from_samples(x.to(torch.float64), full=x[0].numel() <= 1024)


def run_reverse(
    process: Process, denoiser: Denoiser, train: torch.Tensor, n: int, seed: int, steps: int | None,
    sampler: str | None = None, device: torch.device | str = "cpu", batch_size: int = 256,
) -> ReverseRun:
    """Samples 0..n-1 by the process's (or the named) sampler over a respaced schedule."""
    schedule = respace(process.T, steps)
    sampler = sampler or process.default_sampler
    fn = sampler_for(sampler, process)
    out, priors = [], []
    for lo in range(0, n, batch_size):
        ids = torch.arange(lo, min(lo + batch_size, n))
        noise = NoiseSource(seed, ids, process.shape, device)
        u = start_state(process, noise, train, torch.device(device))
        priors.append(u.float().cpu())
        with torch.no_grad():
            out.append(fn(process, denoiser, u, schedule, noise).float().cpu())
    return ReverseRun(torch.cat(out), torch.cat(priors), schedule, sampler)


def check_r1(process: Process, train: torch.Tensor, run: ReverseRun, seed: int) -> Check:
    """R1: the sampler starts from the forward marginal p_T."""
    n = run.prior.shape[0]
    ids = torch.arange(n)
    noise = NoiseSource(seed, ids, process.shape)
    pick = uniform_int(seed, ids, len(train), Stream.DATA_PICK)
    forward = process.sample_marginal(process.T, train[pick].to(torch.float64), noise(process.T, Stream.PRIOR).to(torch.float64), ids)
    mf = _moments(forward)
    rel = fd_moments(_moments(run.prior), mf) / max(second_moment(mf), 1e-300)
    how = ("degraded training images plus noise: the forward marginal itself" if process.prior_needs_data
           else f"sigma_T z, which ignores A_T u_0 (sigma_T = {process.sigma(process.T):.3g})")
    return Check("R1", "R1 reverse starts from the prior p_T", process.name, True, rel <= R1_TOL, rel, R1_TOL,
                 f"The start state is {how}. Figure: Fréchet distance to forward samples at T with the same noise, "
                 f"relative to their E|x|^2, {n} samples.")


def check_r2(process: Process, denoiser: Denoiser, run: ReverseRun, seed: int, n: int = 8) -> Check:
    """R2: the chain is Markov: restarted from its own state half way, it gives the same samples."""
    schedule = run.schedule
    fn = sampler_for(run.sampler, process)
    k = (len(schedule) - 1) // 2
    if k < 1:
        return Check("R2", "R2 reverse chain is Markov", process.name, False, None, None, None, "needs at least 3 steps")
    ids = torch.arange(n)
    noise = NoiseSource(seed, ids, process.shape)
    u = run.prior[:n].to(torch.float32)
    kept: dict[int, torch.Tensor] = {}

    def keep(info: StepInfo) -> None:
        if info.done == k:
            kept["u"] = info.u.clone()

    with torch.no_grad():
        full = fn(process, denoiser, u, schedule, noise, callback=keep)
        rest = fn(process, denoiser, kept["u"], schedule[k:], noise)
    diff = float((full - rest).abs().max())
    return Check("R2", "R2 reverse chain is Markov", process.name, True, diff <= R2_TOL, diff, R2_TOL,
                 f"Restarting the {run.sampler} chain from its own state at index {schedule[k]} with the same per-step noise "
                 f"must reproduce its samples: the next step depends on nothing but the present state. Largest difference, {n} samples.")


def step_entropies(process: Process) -> dict[int, float]:
    """Per-step conditional entropy of the reverse chain t -> t-1, by upper index t (nats).

    Ancestral steps: N/2 ln(2 pi e var) summed over DCT coefficients of the
    posterior variance; the heat and osmosis samplers add delta z, a constant.
    The last step (to 0) adds no noise and is left out.
    """
    n_ch = process.shape[0]
    out = {}
    for t in range(2, process.T + 1):
        if isinstance(process, DegradedPrior):  # the heat sampler: delta z per step
            out[t] = 0.5 * math.prod(process.shape) * math.log(2 * math.pi * math.e * process.delta**2)
            continue
        assert isinstance(process, LinearGaussianProcess)
        var = process.posterior(t, t - 1).var
        if var.ndim == 0:
            out[t] = 0.5 * math.prod(process.shape) * math.log(2 * math.pi * math.e * float(var))
        else:
            out[t] = 0.5 * n_ch * float(torch.log(2 * math.pi * math.e * var).sum())
    return out


def check_r3(process: Process) -> Check:
    """R3: per-step conditional entropy of the reverse chain; monotone for DDPM, reported elsewhere."""
    h = step_entropies(process)
    up, down = monotone(h, +1, {t: R3_SLACK * max(1.0, abs(v)) for t, v in h.items()}), monotone(h, -1, R3_SLACK)
    holds = up.holds or down.holds
    m = up if up.worst <= down.worst else down
    times = process.times()
    wrong = m.wrong_steps
    where = ""
    if wrong:
        lo, hi = float(times[min(wrong)]), float(times[max(wrong) + 1])
        where = f" It turns between t = {lo:.3g} and t = {hi:.3g} (indices {min(wrong)} to {max(wrong) + 1})."
    return Check("R3", "R3 per-step conditional entropy monotone", process.name, True, holds, m.worst, m.allowed,
                 f"N/2 ln(2 pi e var_step) for every step t -> t-1 ({process.step_entropy_text}). "
                 f"Figure: the largest step against the main direction (nats).{where}",
                 details={"indices": list(h), "values": list(h.values()),
                          "turning": [float(times[i]) for i in wrong[:1] + wrong[-1:]] if wrong else []})


def check_r4(process: Process, train: torch.Tensor, run: ReverseRun, seed: int) -> Check:
    """R4: the final samples are close to the data (against the floor of as many data images)."""
    n = run.samples.shape[0]
    ref = _moments(train)
    g = torch.Generator().manual_seed(seed)
    to_ref = FrechetReference(ref)
    fd = to_ref(_moments(run.samples))
    # one subset's distance varies by tens of percent at small n: average a few
    floor = sum(to_ref(_moments(train[torch.randperm(len(train), generator=g)[:n]]))
                for _ in range(R4_FLOOR_DRAWS)) / R4_FLOOR_DRAWS
    ratio = fd / max(floor, 1e-300)
    return Check("R4", "R4 reverse ends near the data distribution", process.name, True, ratio <= R4_RATIO, ratio, R4_RATIO,
                 f"Pixel Fréchet distance of {n} samples to the {len(train)} training images ({fd:.4g}) over that of {n} "
                 f"training images picked at random ({floor:.4g}, the sampling floor, mean of {R4_FLOOR_DRAWS} draws); "
                 f"{len(run.schedule) - 1} steps of the {run.sampler} sampler.",
                 details={"fd": fd, "fd_floor": floor, "n": n})


__all__ = ["ReverseRun", "check_r1", "check_r2", "check_r3", "check_r4", "run_reverse", "step_entropies"]
