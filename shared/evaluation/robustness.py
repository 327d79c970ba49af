"""Robustness of the reverse process.

- Initial-noise sensitivity: u_T + eps z_p with |z_p| = 1 per image, the same
  per-step noise, output distance against eps and the log-log slope, for each
  sampler the process offers (ancestral, DDIM, the heat sampler).
- Seed spread: a quality figure over several seeds, each with a BCa bootstrap
  interval over its samples, and the spread across seeds with a Student-t
  interval of their mean.
- Quality against the number of sampling steps.
- Memorisation: median nearest-neighbour distance of samples to the training
  set over that of held-out images (about 1 for fresh data, near 0 for copies).
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable

import torch

from scalespace.denoisers.base import Denoiser
from scalespace.evaluation.check import add_in_order
from scalespace.noise import NoiseSource, Stream
from scalespace.processes.base import Process
from scalespace.sampling.pipeline import generate, start_state
from scalespace.sampling.samplers import DEFAULT_REVERSE_MEAN, SAMPLERS, sampler_for, sampler_options
from scalespace.sampling.schedule import respace
from scalespace.stats.quality import bootstrap_interval, memorisation_ratio, t_interval
from scalespace.stats.reference_cache import QualityReference

DEFAULT_EPS = (1e-3, 1e-2, 1e-1, 1.0)
#: generate's default batch size, which steps_curve's runs use
GENERATE_BATCH = inspect.signature(generate).parameters["batch_size"].default


def samplers_for(process: Process) -> list[str]:
    """The samplers a process offers: every one that applies to it (SAMPLERS' rule), or its own alone when it
    starts from degraded data (ancestral and DDIM for vp/ve, ancestral for blurring, heat's for heat/osmosis)."""
    if process.prior_needs_data:
        return [process.default_sampler]
    return [name for name, s in SAMPLERS.items() if s.applies_to(process)]


def _slope(eps: list[float], dist: list[float]) -> float | None:
    """Least-squares slope of log distance against log eps.

    Distances below 1e-4 of the largest are float32 rounding of an unchanged
    output (the oracle's outputs jump between training images) and are left out.
    """
    floor = 1e-4 * max(dist, default=0.0)
    pts = [(math.log(e), math.log(d)) for e, d in zip(eps, dist) if d > floor and d > 0 and e > 0]
    if len(pts) < 2:
        return None
    mx = add_in_order(p[0] for p in pts) / len(pts)
    my = add_in_order(p[1] for p in pts) / len(pts)
    sxx = add_in_order((p[0] - mx) ** 2 for p in pts)
    return add_in_order((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx > 0 else None


def sensitivity(
    process: Process, denoiser: Denoiser, train: torch.Tensor, n: int, seed: int, steps: int | None,
    sampler: str, eps: tuple[float, ...] = DEFAULT_EPS, device: torch.device | str = "cpu",
    reverse_mean: str = DEFAULT_REVERSE_MEAN, on_step: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Output distance |x(u_T + eps z_p) - x(u_T)| per image (mean, median, max) for each eps, and the slope.

    Distances below float32 rounding (1e-5 per value, rms) count as 0: the output did not change.
    on_step(done, total) follows the reverse steps (sensitivity_steps).
    """
    schedule = respace(process.T, steps)
    fn = sampler_for(sampler, process)
    ids = torch.arange(n)
    noise = NoiseSource(seed, ids, process.shape, device)
    u = start_state(process, noise, train, torch.device(device))
    zp = noise(0, Stream.PERTURB)
    zp = zp / zp.flatten(1).norm(dim=1).clamp_min(1e-30).reshape(-1, 1, 1, 1)
    # every eps in one batch: copy k of sample b carries ids b, so all copies share b's per-step noise
    k = len(eps) + 1
    starts = torch.cat([u] + [u + e * zp for e in eps])
    with torch.no_grad():
        out = fn(process, denoiser, starts, schedule, NoiseSource(seed, ids.repeat(k), process.shape, device),
                 callback=None if on_step is None else lambda info: on_step(info.done, info.total),
                 **sampler_options(fn, reverse_mean))
    out = out.reshape(k, n, -1).double()
    # copies of a sample in one batch can differ by float32 rounding alone: below this they are the same output
    rounding = 1e-5 * math.sqrt(out.shape[-1])
    rows = []
    for j, e in enumerate(eps, start=1):
        d = (out[j] - out[0]).norm(dim=1)
        d = torch.where(d < rounding, torch.zeros_like(d), d)
        rows.append({"eps": e, "distance_mean": float(d.mean()), "distance_median": float(d.median()), "distance_max": float(d.max())})
    return {
        "sampler": sampler, "steps": len(schedule) - 1, "n": n, "rows": rows,
        "slope": _slope([r["eps"] for r in rows], [r["distance_mean"] for r in rows]),
    }


def seed_spread(
    draw: Callable[[int], torch.Tensor], seeds: list[int], reference: QualityReference, n_boot: int = 100,
    on_seed: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Quality (FD in the reference's feature space) for each seed with a bootstrap interval over its samples,
    and the spread over seeds with a Student-t interval of their mean (from 2 seeds on).

    draw(seed) -> samples (n, C, H, W). The per-seed interval (ci_low, ci_high)
    is the bias-corrected and accelerated (BCa, jackknife acceleration)
    bootstrap interval of the FD expected at this n, the figure the seeds
    scatter around: a resample with duplicates has a noisier covariance and a
    larger FD, and that shift (`bootstrap_bias`, the bootstrap's estimate of
    FD's finite-sample bias: the infinite-sample FD lies about that much
    lower) is taken off the replicates first, without which every replicate
    can lie above the estimate and no quantile interval contains it. The mean
    over k seeds gets mean -/+ t_{0.975, k-1} std / sqrt(k) (mean_ci_low,
    mean_ci_high; mean_ci_method "student-t"). on_seed(done, total) is called after each seed's figures.
    """
    per_seed = []
    for j, s in enumerate(seeds):
        samples = draw(s)
        q = reference(samples, seed=s)
        feats = reference.extractor(samples).double()
        b = bootstrap_interval(feats, reference.distance.of_samples, n_boot=n_boot, seed=s, method="bca", debias=True)
        lo, hi = max(b["low"], 0.0), max(b["high"], 0.0)  # debiased replicates can cross 0; a distance cannot
        per_seed.append({"seed": s, "fd": q["fid"], "ci_low": lo, "ci_high": hi, "bootstrap_bias": b["bias"],
                         "n": q["n_samples"], "kid_mean": q.get("kid_mean"), "kid_std": q.get("kid_std")})
        if on_seed is not None:
            on_seed(j + 1, len(seeds))
    vals = torch.tensor([r["fd"] for r in per_seed], dtype=torch.float64)
    out: dict[str, Any] = {"extractor": reference.extractor.name, "per_seed": per_seed, "mean": float(vals.mean()),
                           "std": float(vals.std()) if len(vals) > 1 else 0.0, "n_reference": reference.moments.count}
    out["ci_method"] = "bca-debiased"
    if len(vals) >= 2:
        out["mean_ci_low"], out["mean_ci_high"] = t_interval(vals)
        out["mean_ci_method"] = "student-t"
    return out


def steps_curve(
    process: Process, denoiser: Denoiser, train: torch.Tensor, n: int, seed: int, step_counts: list[int],
    reference: QualityReference, device: torch.device | str = "cpu", sampler: str | None = None,
    reverse_mean: str = DEFAULT_REVERSE_MEAN, on_step: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Quality against the number of reverse steps (respaced), same seed and samples ids.

    on_step(done, total) follows the reverse steps of every run and one step for each run's figure
    (steps_curve_steps in all)."""
    rows = []
    total, before = steps_curve_steps(process, n, step_counts), 0
    for s in sorted({min(int(k), process.T) for k in step_counts}):
        samples = generate(process, denoiser, n, seed, steps=s, sampler=sampler, train=train, device=device,
                           reverse_mean=reverse_mean,
                           on_step=None if on_step is None else lambda done, _, b=before: on_step(b + done, total))
        before += sampling_steps(process, n, s) + 1
        q = reference(samples, seed=seed)
        rows.append({"steps": s, "fd": q["fid"], "n": q["n_samples"], "kid_mean": q.get("kid_mean")})
        if on_step is not None:
            on_step(before, total)
    return rows


def sampling_steps(process: Process, n: int, steps: int | None, batch_size: int = GENERATE_BATCH) -> int:
    """The reverse steps of `generate` for n samples in batches of batch_size (what its on_step counts)."""
    return -(-n // batch_size) * (len(respace(process.T, steps)) - 1)


def sensitivity_steps(process: Process, steps: int | None) -> int:
    """The reverse steps of one `sensitivity` run (every eps in one batch)."""
    return len(respace(process.T, steps)) - 1


def steps_curve_steps(process: Process, n: int, step_counts: list[int]) -> int:
    """The steps `steps_curve` reports: each run's reverse steps plus one for its figure."""
    return sum(sampling_steps(process, n, s) + 1 for s in sorted({min(int(k), process.T) for k in step_counts}))


def memorisation(samples: torch.Tensor, train: torch.Tensor, heldout: torch.Tensor, max_heldout: int = 2000) -> dict[str, Any]:
    """Nearest-neighbour distance ratio to the training set (about 1: fresh; near 0: copies).

    The held-out median needs no more than `max_heldout` images (the first ones).
    """
    heldout = heldout[:max_heldout]
    return {"ratio": memorisation_ratio(samples, train, heldout), "n_samples": int(samples.shape[0]),
            "n_train": int(train.shape[0]), "n_heldout": int(heldout.shape[0])}


__all__ = ["DEFAULT_EPS", "memorisation", "samplers_for", "sampling_steps", "seed_spread", "sensitivity",
           "sensitivity_steps", "steps_curve", "steps_curve_steps"]
