"""The sampling loop over batches: prior, reverse sampler, per-step statistics.

`generate` is what a `sample` job runs and what a caller can run directly;
both give the same samples. Sample k uses ids k, so its noise depends only on
(seed, k, step), never on the batch it is drawn in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from scalespace import ScalespaceError
from scalespace.denoisers.base import Denoiser
from scalespace.kernels import dispatch
from scalespace.noise import NoiseSource, Stream, uniform_int
from scalespace.processes.base import Process
from scalespace.sampling.samplers import (
    DEFAULT_REVERSE_MEAN,
    StepInfo,
    check_reverse_mean,
    sampler_for,
    sampler_options,
)
from scalespace.sampling.schedule import DEFAULT_SPACING, respace


#: Batches are padded to a multiple of this many rows. Matrix-product kernels
#: pick different code paths (and summation orders) for very small row counts,
#: so a sample's bits would otherwise depend on the size of its batch.
ROW_ALIGN = 8


def _aligned_ids(ids: torch.Tensor) -> torch.Tensor:
    pad = (-len(ids)) % ROW_ALIGN
    return torch.cat([ids, ids[-1:].expand(pad)]) if pad else ids


@dataclass
class TrajectoryMoments:
    """Per visited index: count, sum and sum of squares of all values (float64), mergeable."""

    count: dict[int, int] = field(default_factory=dict)
    total: dict[int, float] = field(default_factory=dict)
    total_sq: dict[int, float] = field(default_factory=dict)

    def add(self, index: int, u: torch.Tensor) -> None:
        """Absorb the states u (B, ...) at `index`: float64 sums made where u lives (statistics kernels on a GPU)."""
        x = u.detach()
        s, q = dispatch.pixel_moments(x)
        self.count[index] = self.count.get(index, 0) + x.numel()
        self.total[index] = self.total.get(index, 0.0) + float(s.sum())
        self.total_sq[index] = self.total_sq.get(index, 0.0) + float(q.sum())

    def rows(self, process: Process, which: list[str]) -> list[dict]:
        times = process.times()
        out = []
        for i in sorted(self.count, reverse=True):
            n = self.count[i]
            mean = self.total[i] / n
            row: dict = {"index": i, "t": float(times[i])}
            if "mean" in which:
                row["mean"] = mean
            if "variance" in which:
                row["variance"] = max(self.total_sq[i] / n - mean * mean, 0.0)
            if "conditional_entropy" in which:
                h = process.conditional_entropy(i)
                row["conditional_entropy"] = h if h != float("-inf") else None
            out.append(row)
        return out


def start_state(
    process: Process, noise: NoiseSource, train: torch.Tensor | None, device: torch.device
) -> torch.Tensor:
    """u_T for one batch: sigma_T z, or degraded data plus noise (heat, osmosis)."""
    z = noise(process.T, Stream.PRIOR)
    data = None
    if process.prior_needs_data:
        if train is None or len(train) == 0:
            raise ScalespaceError(f"process {process.name!r} starts from degraded training images: none given")
        pick = uniform_int(noise.seed, noise.ids, len(train), Stream.DATA_PICK)
        data = train[pick].to(device=device, dtype=z.dtype)
    return process.sample_prior(z, data, noise.ids)


def generate(
    process: Process,
    denoiser: Denoiser,
    n: int,
    seed: int,
    *,
    batch_size: int = 64,
    steps: int | None = None,
    sampler: str | None = None,
    eta: float = 0.0,
    timestep_spacing: str = DEFAULT_SPACING,
    reverse_mean: str = DEFAULT_REVERSE_MEAN,
    train: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
    first_id: int = 0,
    on_step: Callable[[int, int], None] | None = None,
    trajectory: TrajectoryMoments | None = None,
    on_state: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Draw samples first_id .. first_id + n - 1; returns (n, C, H, W) float32 on the CPU.

    on_step(done, total) is called after every reverse step of every batch
    (total counts the steps of all batches). `timestep_spacing` picks the
    respaced indices (schedule.respace: trailing, leading or linspace);
    `reverse_mean` the heat sampler's mean (samplers.REVERSE_MEANS: ihdm or posterior).
    on_state(index, u, ids) sees each batch's start state and its state after every
    reverse step (u: the batch's samples, ids: their ids); it must only read u,
    so the samples are the same with it or without it.
    """
    device = torch.device(device)
    schedule = respace(process.T, steps, timestep_spacing)
    fn = sampler_for(sampler, process)
    check_reverse_mean(reverse_mean, process, sampler)
    options = {"eta": eta} if fn.__name__ == "sample_ddim" else sampler_options(fn, reverse_mean)
    n_batches = -(-n // batch_size)
    total = n_batches * (len(schedule) - 1)
    out = []
    for b in range(n_batches):
        lo = first_id + b * batch_size
        ids = torch.arange(lo, min(lo + batch_size, first_id + n))
        keep = len(ids)
        noise = NoiseSource(seed, _aligned_ids(ids), process.shape, device)
        u = start_state(process, noise, train, device)
        if trajectory is not None:
            if hasattr(trajectory, "begin_batch"):  # statistics kept per batch number (a batch tree)
                trajectory.begin_batch(lo // batch_size)
            trajectory.add(schedule[0], u[:keep])
        if on_state is not None:
            on_state(schedule[0], u[:keep], ids)
        done_before = b * (len(schedule) - 1)

        def callback(info: StepInfo, done_before=done_before) -> None:
            if trajectory is not None:
                trajectory.add(info.index, info.u[:keep])
            if on_state is not None:
                on_state(info.index, info.u[:keep], ids)
            if on_step is not None:
                on_step(done_before + info.done, total)

        with torch.no_grad():
            u = fn(process, denoiser, u, schedule, noise, callback=callback, **options)
        out.append(u[:keep].float().cpu())
    return torch.cat(out)
