"""The `sample` job: reverse diffusion with a model, samples and trajectory statistics."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import torch

from scalespace import ScalespaceError
from scalespace.data import dataset_shape, load_dataset
from scalespace.denoisers.base import Denoiser
from scalespace.denoisers.checkpoints import load_model
from scalespace.denoisers.oracle import OracleDenoiser
from scalespace.evaluation import pictures
from scalespace.evaluation.check import finite_or_none
from scalespace.evaluation.sample_trajectory import TrajectoryStats, TrajectoryTree, moment_steps, reference_moments, sample_quality
from scalespace.jobs.context import JobContext
from scalespace.jobs.images import from_npz, grid_png, to_npz
from scalespace.jobs.shards import Shard, gather, shard_count, plan_shards, shard_range, spec_range, summed_progress
from scalespace.jobs.specs import SampleSpec
from scalespace.kernels import dispatch
from scalespace.processes import Process, make_process, process_class
from scalespace.processes.base import Process as _P  # noqa: F401  (re-export for type checkers)
from scalespace.sampling.pipeline import TrajectoryMoments, generate  # noqa: F401  (TrajectoryMoments: re-export)
from scalespace.sampling.samplers import check_reverse_mean, check_sampler
from scalespace.sampling.schedule import check_spacing, check_steps, respace
from scalespace.storage.base import ArtifactStore


def process_for(spec: Any, shape: tuple[int, int, int]) -> Process:
    """The spec's process, its seeded parameters (osmosis guidance) drawn from the job's seed unless given,
    bound to the kernels' dispatch (osmosis evolves through the stencil kernel on a GPU)."""
    params = dict(spec.process_params)
    for name in process_class(spec.process).seeded_params:
        params.setdefault(name, int(spec.seed))
    return dispatch.bind(build_process(spec.process, shape, params))


def build_process(name: str, shape: tuple[int, int, int], params: dict[str, Any]) -> Process:
    """make_process, its refusals as "process_params...: reason" (what admission reports, everywhere)."""
    try:
        return make_process(name, shape, params)
    except ScalespaceError as e:
        msg = str(e)
        head, sep, _ = msg.partition(": ")
        named = sep and head and all(p.replace("_", "").replace("-", "").isalnum() for p in head.split("."))
        raise ScalespaceError(msg if named else f"process_params: {msg}") from None


def load_denoiser(
    model: str, process: Process, train: torch.Tensor, store: ArtifactStore, device: torch.device, chunk: int = 4096,
    dtype: torch.dtype = torch.float32,
) -> Denoiser:
    """`oracle` over the training set (products in `dtype`), or a registered checkpoint."""
    if model == "oracle":
        return OracleDenoiser(process, train.to(device), chunk=chunk, dtype=dtype)
    return load_model(model, process, store, device)


def check_sample_spec(spec: SampleSpec, process: Process | None = None) -> Process:
    """Everything that can be checked before running: process, schedule, steps, spacing (`process`: built by the caller)."""
    if process is None:
        process = process_for(spec, dataset_shape(spec.data, spec.data_size))
    try:
        check_steps(process.T, spec.steps)
    except ScalespaceError as e:
        raise ScalespaceError(f"steps: {e}") from None
    check_sampler(spec.sampler, process)
    check_spacing(spec.timestep_spacing, process)
    check_reverse_mean(spec.reverse_mean, process, spec.sampler)
    if spec.model == "oracle" and not process.shared_operator:
        raise ScalespaceError("process_params.guidance: the oracle needs 'shared' osmosis guidance (one for all samples)")
    shard_count(spec)  # shards: none of them empty
    return process


def run_sample(spec: SampleSpec, ctx: JobContext) -> dict[str, Any]:
    process = check_sample_spec(spec)
    shards = plan_shards(spec, ctx.job_id)
    with ctx.timed("load"):
        train = load_dataset(spec.data, "train", size=spec.data_size, limit=spec.data_limit).images
        denoiser = load_denoiser(spec.model, process, train, ctx.store, ctx.device, spec.oracle_chunk,
                                 dtype=getattr(torch, spec.oracle_dtype))
    schedule = respace(process.T, spec.steps, spec.timestep_spacing)
    if spec.shard is not None:
        return _run_shard(spec, ctx, process, denoiser, train, schedule)
    recorder = pictures.ReverseRecorder(process, denoiser, schedule) if spec.pictures else None
    if shards:
        samples, traj = _merge_shards(spec, ctx, process, schedule, shards)
        if recorder is not None:  # the first samples' chain again, for the picture (the samples are the shards')
            _draw(spec, ctx, process, denoiser, train, min(spec.n, pictures.REVERSE_SAMPLES), recorder=recorder,
                  phase="pictures")
    else:
        tree = _trajectory(spec, process, schedule)
        samples = _draw(spec, ctx, process, denoiser, train, spec.n, trajectory=tree, recorder=recorder)
        traj = tree.result()
    rows = traj.rows(process, list(spec.statistics))
    ctx.put("samples.npz", to_npz(samples=samples.numpy()))
    ctx.put("grid.png", grid_png(samples))
    ctx.put_json("trajectory.json", {"process": process.describe(), "steps": finite_or_none(rows)})
    if spec.pictures:
        with ctx.timed("pictures"):
            caption = pictures.Caption(process.name, process.T, spec.data, spec.model,
                                       check_sampler(spec.sampler, process), len(schedule) - 1, spec.seed)
            for name, png in pictures.sample_pictures(process, train, samples, recorder, caption, spec.seed).items():
                ctx.put(name, png)
    with ctx.timed("quality"):
        quality = finite_or_none(sample_quality(samples, spec.data, spec.data_size, list(spec.quality), ctx.store,
                                                ctx.device, traj.reference, spec.seed))
    ctx.manifest_extra["quality"] = quality
    if shards:
        ctx.manifest_extra["shards"] = [{"job_id": s.job_id, "ids": _inclusive(shard_range(spec.n, spec.batch_size, s.index, s.count))}
                                        for s in shards]
    return {
        "process": process.describe(),
        "model": {"id": spec.model, "digest": denoiser.digest()},
        "samples": {"n": spec.n, "shape": list(samples.shape[1:]), "ids": [0, spec.n - 1]},
        "quality": {**{k: v.get(k) for k, v in quality.items()}, "n_samples": spec.n},
        **({"shards": len(shards)} if shards else {}),
    }


def _inclusive(ids: tuple[int, int]) -> list[int]:
    """[lo, hi) as the first and last id, the way a summary names its samples."""
    return [ids[0], ids[1] - 1]


#: a shard's statistics in their mergeable form: its batch tree's nodes (TrajectoryTree.to_dict)
SHARD_STATS = "trajectory-shard.json"


def _trajectory(spec: SampleSpec, process: Process, schedule: list[int]) -> TrajectoryTree:
    """The job's trajectory statistics, kept per batch and merged in the batch tree (the same for any sharding)."""
    reference = reference_moments(spec.data, spec.data_size) if "fd_data" in spec.statistics else None
    return TrajectoryTree(lambda: TrajectoryStats(list(spec.statistics), math.prod(process.shape),
                                                  moment_steps(schedule), reference))


def _draw(spec: SampleSpec, ctx: JobContext, process: Process, denoiser: Denoiser, train: torch.Tensor, n: int,
          first_id: int = 0, trajectory: TrajectoryStats | None = None,
          recorder: pictures.ReverseRecorder | None = None, phase: str = "sample") -> torch.Tensor:
    """Samples first_id .. first_id + n - 1, reporting each reverse step as `phase`."""
    t0 = time.perf_counter()

    def on_step(done: int, total: int) -> None:  # at most every 0.2 s to the job store (the first and last always)
        ctx.tick(phase, done, total, steps_per_second=done / max(time.perf_counter() - t0, 1e-9))

    ctx.check_stop()
    with ctx.timed("sample"):
        return generate(
            process, denoiser, n, spec.seed,
            batch_size=spec.batch_size, steps=spec.steps, sampler=spec.sampler, eta=spec.eta,
            timestep_spacing=spec.timestep_spacing, reverse_mean=spec.reverse_mean,
            train=train, device=ctx.device, first_id=first_id, on_step=on_step, trajectory=trajectory,
            on_state=recorder,
        )


def _run_shard(spec: SampleSpec, ctx: JobContext, process: Process, denoiser: Denoiser, train: torch.Tensor,
               schedule: list[int]) -> dict[str, Any]:
    """A shard job: its slice of the samples and its statistics, merged by the parent."""
    lo, hi = spec_range(spec, spec.n)
    tree = _trajectory(spec, process, schedule)
    samples = _draw(spec, ctx, process, denoiser, train, hi - lo, first_id=lo, trajectory=tree)
    ctx.put("samples.npz", to_npz(samples=samples.numpy()))
    ctx.put_json(SHARD_STATS, tree.to_dict())
    return {
        "process": process.describe(),
        "model": {"id": spec.model, "digest": denoiser.digest()},
        "samples": {"n": hi - lo, "shape": list(samples.shape[1:]), "ids": [lo, hi - 1]},
        "shard": {"index": spec.shard.index, "count": spec.shard.count},
    }


def _merge_shards(spec: SampleSpec, ctx: JobContext, process: Process, schedule: list[int],
                  shards: list[Shard]) -> tuple[torch.Tensor, TrajectoryStats]:
    """The shards' samples in order (bit for bit the unsharded job's) and their statistics merged."""
    per_batch = len(schedule) - 1
    starts = [shard_range(spec.n, spec.batch_size, s.index, s.count)[0] for s in shards]
    offsets = [-(-lo // spec.batch_size) * per_batch for lo in starts]
    total = -(-spec.n // spec.batch_size) * per_batch
    manifests = gather(ctx, shards, summed_progress(ctx, "sample", offsets, total))
    with ctx.timed("merge"):
        parts, tree = [], _trajectory(spec, process, schedule)
        for shard, manifest in zip(shards, manifests):
            npz = from_npz(ctx.store.read_artifact(shard.job_id, "samples.npz", manifest))
            parts.append(torch.from_numpy(npz["samples"]))
            tree.update_from_dict(json.loads(ctx.store.read_artifact(shard.job_id, SHARD_STATS, manifest)))
        samples, traj = torch.cat(parts), tree.result()
    if samples.shape[0] != spec.n:
        raise ScalespaceError(f"shards: the shards hold {samples.shape[0]} samples, not n = {spec.n}; retry the job")
    return samples, traj
