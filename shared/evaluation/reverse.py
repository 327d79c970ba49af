"""Reverse-process properties R1 to R4, run with a denoiser (the oracle by default).

R1 measures, in nats, how far the sampler's start distribution (the prior) is
from the forward marginal p_T: KL(p_T || prior) between moment-matched
Gaussians of their exact moments over the training set (the same figure and
threshold as F4). For heat and osmosis the prior is p_T itself, so R1 is an
identity there; R2 restarts the chain half way from its own state and must
reproduce the rest exactly; R3 is the closed-form per-step conditional
entropy N/2 ln(2 pi e var_step) along the full chain; R4 is a kernel
two-sample test (MMD, permutation p-value) of the final samples against as
many training images, which sees the whole distribution, not only its mean
and covariance (see `check_r4`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from scalespace.denoisers.base import Denoiser
from scalespace.evaluation.check import Check, add_in_order
from scalespace.evaluation.forward import F4_TOL, gaussian_kl_to_law, monotone
from scalespace.noise import NoiseSource, Stream, uniform_int
from scalespace.processes.base import DegradedPrior, LinearGaussianProcess, Process
from scalespace.sampling.pipeline import start_state
from scalespace.sampling.samplers import DEFAULT_REVERSE_MEAN, StepInfo, sampler_for, sampler_options
from scalespace.sampling.schedule import respace
from scalespace.stats.frechet import FrechetReference, fd_moments, second_moment
from scalespace.stats.moments import Moments
from scalespace.stats.two_sample import mmd_permutation_test

R1_TOL = F4_TOL
R2_TOL = 1e-6
R3_SLACK = 1e-9
#: R4 fails when its two-sample test rejects "samples and data share one distribution" at this level (p < level)
R4_LEVEL = 0.01
#: relabellings of the pooled sample for R4's permutation p-value (the smallest p-value is 1 / (1 + this))
R4_PERMUTATIONS = 500
#: R4's Gaussian kernel bandwidth, as a fraction of the median pairwise distance of the pooled sample
R4_BANDWIDTH_SCALE = 0.25
#: R4 tests at most this many samples (a random subset beyond), to keep the kernel matrix small
R4_MAX_N = 1024
#: the sample size at which R4 rejects a Gaussian with the mean and covariance of the digits (8x8 training split)
#: at R4_LEVEL: measured, see tests/unit/evaluation/test_reverse_r4.py
R4_POWER_N = 64
#: random subsets of the data averaged for the Fréchet sampling floor that R4 reports (not tests)
R4_FLOOR_DRAWS = 8


@dataclass
class ReverseRun:
    """The samples of one reverse run and what the checks need from it."""

    samples: torch.Tensor
    prior: torch.Tensor
    schedule: list[int]
    #: the sampler's name (ancestral, ddim, heat)
    sampler: str
    #: the heat sampler's step mean (samplers.REVERSE_MEANS)
    reverse_mean: str = DEFAULT_REVERSE_MEAN


def _moments(x: torch.Tensor) -> Moments:
    return Moments.from_samples(x.to(torch.float64), full=x[0].numel() <= 1024)


def run_reverse(
    process: Process, denoiser: Denoiser, train: torch.Tensor, n: int, seed: int, steps: int | None,
    sampler: str | None = None, device: torch.device | str = "cpu", batch_size: int = 256,
    reverse_mean: str = DEFAULT_REVERSE_MEAN, on_step: Callable[[int, int], None] | None = None,
    first_id: int = 0,
) -> ReverseRun:
    """Samples first_id .. first_id + n - 1 by the process's (or the named) sampler over a respaced schedule
    (a shard of a run: first_id a multiple of batch_size, so its batches are the whole run's).

    on_step(done, total) is called after every reverse step of every batch (reverse_steps(...) in all)."""
    schedule = respace(process.T, steps)
    sampler = sampler or process.default_sampler
    fn = sampler_for(sampler, process)
    per_batch = len(schedule) - 1
    total = reverse_steps(process, n, steps, batch_size)
    out, priors = [], []
    for b, lo in enumerate(range(first_id, first_id + n, batch_size)):
        ids = torch.arange(lo, min(lo + batch_size, first_id + n))
        noise = NoiseSource(seed, ids, process.shape, device)
        u = start_state(process, noise, train, torch.device(device))
        priors.append(u.float().cpu())

        def callback(info: StepInfo, before: int = b * per_batch) -> None:
            on_step(before + info.done, total)

        with torch.no_grad():
            out.append(fn(process, denoiser, u, schedule, noise, callback=callback if on_step else None,
                          **sampler_options(fn, reverse_mean)).float().cpu())
    return ReverseRun(torch.cat(out), torch.cat(priors), schedule, sampler, reverse_mean)


def reverse_steps(process: Process, n: int, steps: int | None, batch_size: int = 256) -> int:
    """The steps run_reverse reports to on_step: the respaced schedule's steps for each batch."""
    return -(-n // batch_size) * (len(respace(process.T, steps)) - 1)


def check_r1(process: Process, train: torch.Tensor, run: ReverseRun, seed: int) -> Check:
    """R1: the sampler starts from the forward marginal p_T: KL(p_T || prior) in nats (moment-matched, exact moments)."""
    n = run.prior.shape[0]
    ids = torch.arange(n)
    noise = NoiseSource(seed, ids, process.shape)
    pick = uniform_int(seed, ids, len(train), Stream.DATA_PICK)
    forward = process.sample_marginal(process.T, train[pick].to(torch.float64), noise(process.T, Stream.PRIOR).to(torch.float64), ids)
    mf = _moments(forward)
    rel = fd_moments(_moments(run.prior), mf) / max(second_moment(mf), 1e-300)
    kl, full = gaussian_kl_to_law(process, train, 1.0, lambda u0, z, i: process.sample_prior(z, u0, i))
    how = ("degraded training images plus noise: the forward marginal itself, so the figure is 0 by construction "
           "(an identity)" if process.prior_needs_data
           else f"sigma_T z, which ignores A_T u_0 (sigma_T = {process.sigma(process.T):.3g})")
    return Check("R1", "R1 reverse starts from the prior p_T", process.name, True, kl <= R1_TOL, kl, R1_TOL,
                 f"The start state is {how}. Figure: KL(p_T || prior) in nats between moment-matched Gaussians, the mean "
                 f"and {'full' if full else 'per-pixel'} covariance of each exact over all {len(train)} training images "
                 f"(noise added in closed form); at most {R1_TOL:g} nats, as F4. Detail: the run's {n} start states against "
                 f"forward samples at T with the same noise, relative Fréchet distance {rel:.3g}.",
                 details={"fd_start_relative": rel}, kind="identity" if process.prior_needs_data else "bound")


def check_r2(process: Process, denoiser: Denoiser, run: ReverseRun, seed: int, n: int = 8, fn=None,
             poll: Callable[[], None] | None = None) -> Check:
    """R2: the chain is Markov: restarted from its own state half way, it gives the same samples.

    A bound (largest difference against R2_TOL), and it can fail: a sampler that carries anything from one
    step to the next besides the state (a momentum, a multistep method's earlier predictions) does not
    reproduce its samples from the state alone. `fn`: the sampler function (default the run's sampler); `poll`:
    called after every step of both runs (a job's progress and cancel check).
    """
    schedule = run.schedule
    fn = fn or sampler_for(run.sampler, process)
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
        if poll is not None:
            poll()

    with torch.no_grad():
        opts = sampler_options(fn, run.reverse_mean)
        full = fn(process, denoiser, u, schedule, noise, callback=keep, **opts)
        rest = fn(process, denoiser, kept["u"], schedule[k:], noise, callback=(lambda info: poll()) if poll else None, **opts)
    diff = float((full - rest).abs().max())
    return Check("R2", "R2 reverse chain is Markov", process.name, True, diff <= R2_TOL, diff, R2_TOL,
                 f"Restarting the {run.sampler} chain from its own state at index {schedule[k]} with the same per-step noise "
                 f"must reproduce its samples: the next step depends on nothing but the present state. Figure: the largest "
                 f"difference over {n} samples, at most {R2_TOL:g}. A chain with memory (a step that reads the previous "
                 f"step's state or prediction as well) differs by the memory's weight and fails.",
                 details={"restart_index": schedule[k]})


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
    """R4: the final samples are drawn from the data distribution: an MMD two-sample test that does not reject.

    The samples (n of them, at most R4_MAX_N) are tested against n distinct training images picked at
    random: unbiased MMD^2 with a Gaussian kernel whose bandwidth is R4_BANDWIDTH_SCALE times the median
    pairwise distance of the pooled sample, permutation p-value from R4_PERMUTATIONS relabellings (seeded).
    R4 holds when p >= R4_LEVEL. The reference is the training set because that is the distribution the
    reverse process is meant to end at with the oracle (the exact score of the training images, whose
    samples are training images) and what a trained denoiser was fitted to. The pixel Fréchet distance
    (mean and covariance only) and its sampling floor are kept in the details for reference.
    """
    g = torch.Generator().manual_seed(seed)
    samples = run.samples.to(torch.float64)
    if samples.shape[0] > R4_MAX_N:
        samples = samples[torch.randperm(samples.shape[0], generator=g)[:R4_MAX_N]]
    n = samples.shape[0]
    pick = torch.randperm(len(train), generator=g)[:n] if n <= len(train) else torch.randint(len(train), (n,), generator=g)
    ref = train[pick].to(torch.float64)
    # the median heuristic itself is too wide in 64 to 784 dimensions: over the data's range the kernel is then
    # nearly quadratic and sees little beyond mean and covariance; a quarter of it sees the images' finer shape
    test = mmd_permutation_test(samples, ref, permutations=R4_PERMUTATIONS, seed=seed, scales=(R4_BANDWIDTH_SCALE,))
    h = R4_BANDWIDTH_SCALE * test.bandwidth
    # the Fréchet figure of before, for reference only
    to_ref = FrechetReference(_moments(train))
    fd = to_ref(_moments(samples))
    # one subset's distance varies by tens of percent at small n: average a few
    floor = add_in_order(to_ref(_moments(train[torch.randperm(len(train), generator=g)[:n]]))
                         for _ in range(R4_FLOOR_DRAWS)) / R4_FLOOR_DRAWS
    p = test.p_value
    return Check("R4", "R4 reverse ends near the data distribution", process.name, True, p >= R4_LEVEL, p, R4_LEVEL,
                 f"Kernel two-sample test (MMD) of {n} samples ({len(run.schedule) - 1} steps of the {run.sampler} "
                 f"sampler) against {n} of the {len(train)} training images picked at random: unbiased MMD^2 "
                 f"({test.statistic:.3g}) with a Gaussian kernel of bandwidth {R4_BANDWIDTH_SCALE:g} x the median pairwise "
                 f"distance of the pooled images ({h:.3g}); p-value from {R4_PERMUTATIONS} random "
                 f"relabellings of the pooled images. Figure: the p-value; R4 holds unless p < {R4_LEVEL:g}. Unlike a "
                 f"Fréchet distance, which sees only the mean and covariance, the test sees the whole distribution: a "
                 f"Gaussian with the digits' (8x8) mean and covariance is rejected from {R4_POWER_N} samples on. "
                 f"For reference, pixel Fréchet distance {fd:.4g} against a floor of {floor:.4g} for as many training "
                 f"images (ratio {fd / max(floor, 1e-300):.3g}).",
                 details={"n": n, "mmd2": test.statistic, "p_value": p, "bandwidth": h,
                          "bandwidth_median": test.bandwidth, "permutations": R4_PERMUTATIONS, "level": R4_LEVEL,
                          "power_n": R4_POWER_N, "fd": fd, "fd_floor": floor,
                          "fd_ratio": fd / max(floor, 1e-300)},
                 kind="test")


__all__ = ["ReverseRun", "check_r1", "check_r2", "check_r3", "check_r4", "reverse_steps", "run_reverse", "step_entropies"]
