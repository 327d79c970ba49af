"""Sharded jobs: one sample or evaluate job's samples drawn by many workers.

A spec with `shards` K > 1 (or "auto": one shard per `shard_size` samples)
runs as a parent and K shard jobs with fixed ids `<parent>.s000`, `.s001`, ...
Shard k is the parent's spec with `shard: {index: k, count: K}`; it draws a
contiguous slice of the sample indices, whole batches of `batch_size` each
(`shard_range`), so every batch is the batch the unsharded job draws: the
counter-based noise gives sample i the same numbers whatever the split, and
the samples of the union are bit-identical to one job's. Each shard writes
its samples and its statistics in their mergeable form; the parent merges
them exactly (scalespace.stats.moments: Chan's parallel update) and writes
the one result and the one manifest.

- embedded (`scalespace run`): the parent runs each shard in this process,
  one after another, through the same run_job (`ctx.run_child`), reporting
  the shards' progress as its own;
- distributed: the worker submits the shards as jobs of their own
  (scalespace.scheduler.sweeps.fan_out, as a sweep's children), and when the
  last has ended it runs the parent, which finds every shard's manifest and
  only merges. A shard that failed fails the parent; retrying the parent
  reruns the failed shards alone (the others keep their results).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from scalespace import ScalespaceError
from scalespace.jobs.context import JobContext, Progress
from scalespace.jobs.specs import SHARDED_KINDS, EvaluateSpec, SampleSpec, Spec
from scalespace.storage import StoreUnavailable


@dataclass(frozen=True)
class Shard:
    """One shard of a parent job: its id, its spec (a dict) and the sample ranges it draws."""

    index: int
    count: int
    job_id: str
    spec: dict[str, Any]


def _sizes(spec: Spec) -> list[int]:
    """The sample counts a shard splits: a sample job's n; an evaluate job's n and n_reverse."""
    if isinstance(spec, SampleSpec):
        return [spec.n]
    if isinstance(spec, EvaluateSpec):
        return [spec.n, spec.n_reverse]
    return []


def _batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def shard_count(spec: Spec) -> int:
    """How many shards the spec runs as (1: not sharded; a shard job itself is never split again).

    "auto": ceil(samples / shard_size), at most one shard per batch. An integer above the number of
    batches is refused: its shards would be empty."""
    sizes = _sizes(spec)
    shards = getattr(spec, "shards", 1)
    if not sizes or getattr(spec, "shard", None) is not None or shards == 1:
        return 1
    batch_size = spec.batch_size
    most = max(_batches(n, batch_size) for n in sizes)
    if shards == "auto":
        return max(1, min(-(-max(sizes) // spec.shard_size), most))
    if shards > most:
        what = "n" if len(sizes) == 1 else "the larger of n and n_reverse"
        raise ScalespaceError(
            f"shards: {shards} shards of {max(sizes)} samples ({what}) in batches of {batch_size} would leave "
            f"shards empty; use at most {most} shards, or a smaller batch_size")
    return int(shards)


def shard_range(n: int, batch_size: int, index: int, count: int) -> tuple[int, int]:
    """Shard `index` of `count`: the sample ids [lo, hi) it draws, whole batches (the last may be short)."""
    b = _batches(n, batch_size)
    lo, hi = index * b // count, (index + 1) * b // count
    return min(lo * batch_size, n), min(hi * batch_size, n)


def spec_range(spec: Spec, n: int) -> tuple[int, int]:
    """The ids [lo, hi) of the n samples this spec draws: all of them, or its shard's slice."""
    shard = getattr(spec, "shard", None)
    if shard is None:
        return 0, n
    return shard_range(n, spec.batch_size, shard.index, shard.count)


def shard_job_id(parent: str, k: int) -> str:
    return f"{parent}.s{k:03d}"


def plan_shards(spec: Spec, parent: str) -> list[Shard]:
    """The parent's shards in order (none when the spec is not sharded)."""
    count = shard_count(spec)
    if count == 1:
        return []
    dump = spec.model_dump(mode="json")
    return [Shard(k, count, shard_job_id(parent, k), {**dump, "shards": count, "shard": {"index": k, "count": count}})
            for k in range(count)]


def is_sharded_parent(spec: Spec) -> bool:
    return spec.kind in SHARDED_KINDS and shard_count(spec) > 1


def gather(ctx: JobContext, shards: list[Shard], progress: Callable[[Shard], Callable[[Progress], None]] | None = None
           ) -> list[dict[str, Any]]:
    """Every shard's manifest, in order.

    Embedded, a shard without results runs here (ctx.run_child; `progress(shard)` turns its progress into the
    parent's). In the service the shards ran as jobs of their own before the parent: a manifest that is not in
    the store yet (published late across an outage) is waited out like the store itself."""
    out = []
    for shard in shards:
        ctx.check_stop()
        manifest = ctx.store.manifest(shard.job_id)
        if manifest is None:
            if ctx.attempt is not None:
                raise StoreUnavailable(f"shard {shard.job_id} has ended but its manifest is not in the store yet")
            manifest = ctx.run_child(shard.spec, shard.job_id, progress(shard) if progress else None)
        out.append(manifest)
    return out


def summed_progress(ctx: JobContext, phase: str, offsets: list[int], total: int) -> Callable[[Shard], Callable[[Progress], None]]:
    """Embedded: shard k's progress in `phase` as the parent's, offsets[k] + its done of the parent's total."""

    def for_shard(shard: Shard) -> Callable[[Progress], None]:
        def forward(p: Progress) -> None:
            if p.phase == phase:
                ctx.report(phase, offsets[shard.index] + p.done, total, shard=f"{shard.index + 1}/{shard.count}",
                           **p.figures)
            else:
                ctx.report(f"{p.phase} (shard {shard.index + 1} of {shard.count})", p.done, p.total, **p.figures)

        return forward

    return for_shard


__all__ = ["SHARDED_KINDS", "Shard", "gather", "is_sharded_parent", "plan_shards", "shard_count",
           "shard_job_id", "shard_range", "spec_range", "summed_progress"]
