"""Per-step statistics of a reverse (sampling) trajectory, for `sample` jobs.

`TrajectoryStats` extends the pipeline's `TrajectoryMoments` (count, sum and
sum of squares per visited index: mean, variance, conditional entropy) with
the measures a `sample` spec may ask for in `statistics`:

- histogram_entropy: mean per-image grey-value histogram entropy (nats);
- kl_gaussian: KL(N(mu, diag var) || N(0, I)) of the per-pixel moment-matched
  diagonal Gaussian (nats), cheap at any image size;
- fd_data: pixel Fréchet distance to reference images (the held-out split),
  kept at no more than MOMENT_STEPS evenly spaced steps because it needs D^2
  numbers per step (diagonal Gaussians above FULL_COVARIANCE_MAX values).

Every accumulator merges exactly, so shards of one job give the figures of
one pass, and the whole object round-trips through JSON.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Callable

import torch

from scalespace import ScalespaceError
from scalespace.data import load_dataset
from scalespace.evaluation.forward_trajectory import FULL_COVARIANCE_MAX, HIST_BINS
from scalespace.processes.base import Process
from scalespace.sampling.pipeline import TrajectoryMoments
from scalespace.stats.batch_tree import BatchTree
from scalespace.stats.entropy import MeanAccumulator, histogram_entropy
from scalespace.stats.frechet import FrechetReference, fd_moments
from scalespace.stats.moments import Moments
from scalespace.stats.reference_cache import quality, reference_features

FORMAT = "scalespace.trajectory_stats/1"
#: steps at which pixel Moments are kept for fd_data
MOMENT_STEPS = 16
BASIC = ("mean", "variance", "conditional_entropy")
EXTRA = ("histogram_entropy", "kl_gaussian", "fd_data")


def moment_steps(schedule: list[int], count: int = MOMENT_STEPS) -> set[int]:
    """At most `count` + 1 evenly spaced indices of a schedule (its ends included)."""
    if len(schedule) <= count + 1:
        return set(schedule)
    k = len(schedule) - 1
    return {schedule[round(j * k / count)] for j in range(count + 1)}


class TrajectoryStats(TrajectoryMoments):
    """Per-step statistics of sampled trajectories; `add(index, u)` is called by the sampling pipeline."""

    def __init__(self, which: list[str], dim: int, moment_indices: set[int] | None = None, reference: Moments | None = None):
        super().__init__()
        unknown = set(which) - set(BASIC) - set(EXTRA)
        if unknown:
            raise ScalespaceError(f"statistics: unknown measure(s) {sorted(unknown)}; choose from {', '.join(BASIC + EXTRA)}")
        if "fd_data" in which and reference is None:
            raise ScalespaceError("statistics: fd_data needs reference Moments (the held-out images)")
        self.which = list(which)
        self.dim = int(dim)
        self.full = self.dim <= FULL_COVARIANCE_MAX
        self.moment_indices = set(moment_indices or ())
        self.reference = reference
        self.hist: dict[int, MeanAccumulator] = {}
        self.pixel: dict[int, Moments] = {}  # diagonal per-pixel moments, every step (kl_gaussian)
        self.full_moments: dict[int, Moments] = {}  # at moment_indices only (fd_data)

    def add(self, index: int, u: torch.Tensor) -> None:
        super().add(index, u)
        x = u.detach().to(device="cpu", dtype=torch.float64)
        if "histogram_entropy" in self.which:
            self.hist.setdefault(index, MeanAccumulator()).update(histogram_entropy(x, bins=HIST_BINS))
        if "kl_gaussian" in self.which:
            self.pixel.setdefault(index, Moments(self.dim)).update(x)
        if "fd_data" in self.which and index in self.moment_indices:
            self.full_moments.setdefault(index, Moments(self.dim, self.full)).update(x)

    def rows(self, process: Process, which: list[str] | None = None) -> list[dict[str, Any]]:
        which = self.which if which is None else which
        rows = super().rows(process, [w for w in which if w in BASIC])
        to_ref = FrechetReference(self.reference) if "fd_data" in which and self.reference is not None else None
        for row in rows:
            i = row["index"]
            if "histogram_entropy" in which and i in self.hist:
                row["histogram_entropy"] = self.hist[i].mean()
            if "kl_gaussian" in which and i in self.pixel:
                m = self.pixel[i]
                var = m.var().clamp_min(1e-12)  # constant pixels would make the KL infinite
                row["kl_gaussian"] = float(0.5 * (var + m.mean() ** 2 - 1 - var.log()).sum())
            if "fd_data" in which and i in self.full_moments and self.full_moments[i].count >= 2:
                row["fd_data"] = to_ref(self.full_moments[i])
        return rows

    # --- merging and JSON --------------------------------------------------------------
    def merge(self, other: TrajectoryStats) -> TrajectoryStats:
        """Both shards' samples together (neither input changes)."""
        if other.which != self.which or other.dim != self.dim or other.moment_indices != self.moment_indices:
            raise ScalespaceError("trajectory: shards differ in measures, image size or steps; merge shards of one job")
        out = TrajectoryStats(self.which, self.dim, self.moment_indices, self.reference)
        for i in set(self.count) | set(other.count):
            out.count[i] = self.count.get(i, 0) + other.count.get(i, 0)
            out.total[i] = self.total.get(i, 0.0) + other.total.get(i, 0.0)
            out.total_sq[i] = self.total_sq.get(i, 0.0) + other.total_sq.get(i, 0.0)
        for name in ("hist", "pixel", "full_moments"):
            mine, theirs, dest = getattr(self, name), getattr(other, name), getattr(out, name)
            for i in set(mine) | set(theirs):
                a, b = mine.get(i), theirs.get(i)
                dest[i] = a.merge(b) if a is not None and b is not None else _copy(a if a is not None else b)
        return out

    def to_dict(self, reference: bool = True) -> dict[str, Any]:
        """As JSON data; `reference=False` leaves the reference Moments out (from_dict takes them then)."""
        return {
            "format": FORMAT, "which": self.which, "dim": self.dim, "moment_indices": sorted(self.moment_indices),
            "reference": None if self.reference is None or not reference else self.reference.to_dict(),
            "count": {str(k): v for k, v in self.count.items()},
            "total": {str(k): v for k, v in self.total.items()},
            "total_sq": {str(k): v for k, v in self.total_sq.items()},
            "hist": {str(k): v.to_dict() for k, v in self.hist.items()},
            "pixel": {str(k): v.to_dict() for k, v in self.pixel.items()},
            "full_moments": {str(k): v.to_dict() for k, v in self.full_moments.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], reference: Moments | None = None) -> TrajectoryStats:
        """From to_dict's data; `reference`: the reference Moments when the data leaves them out."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ScalespaceError(f"trajectory dict: format must be {FORMAT!r}; pass TrajectoryStats.to_dict() output")
        ref = Moments.from_dict(d["reference"]) if d.get("reference") else reference
        out = cls(d["which"], d["dim"], set(d["moment_indices"]), ref)
        out.count = {int(k): int(v) for k, v in d["count"].items()}
        out.total = {int(k): float(v) for k, v in d["total"].items()}
        out.total_sq = {int(k): float(v) for k, v in d["total_sq"].items()}
        out.hist = {int(k): MeanAccumulator.from_dict(v) for k, v in d["hist"].items()}
        out.pixel = {int(k): Moments.from_dict(v) for k, v in d["pixel"].items()}
        out.full_moments = {int(k): Moments.from_dict(v) for k, v in d["full_moments"].items()}
        return out


class TrajectoryTree:
    """A sampling pipeline's `trajectory` that keeps TrajectoryStats per batch number and merges them in the fixed
    batch tree (scalespace.stats.batch_tree): the same figures, bit for bit, for any split of the batches
    into shards. `make()`: an empty TrajectoryStats."""

    def __init__(self, make: Callable[[], TrajectoryStats]):
        self.make = make
        self.tree: BatchTree[TrajectoryStats] = BatchTree()
        self._batch: int | None = None
        self._current: TrajectoryStats | None = None

    def begin_batch(self, batch: int) -> None:
        self._flush()
        self._batch, self._current = batch, self.make()

    def add(self, index: int, u: torch.Tensor) -> None:
        if self._current is None:
            raise ScalespaceError("trajectory: add before begin_batch; the pipeline numbers each batch first")
        self._current.add(index, u)

    def _flush(self) -> None:
        if self._current is not None:
            self.tree.add(self._batch, self._current)
            self._batch, self._current = None, None

    def result(self) -> TrajectoryStats:
        """Every batch's statistics merged (an empty TrajectoryStats when there were none)."""
        self._flush()
        root = self.tree.result()
        return root if root is not None else self.make()

    def to_dict(self) -> dict[str, Any]:
        """The tree's nodes (a shard's part), the reference left out."""
        self._flush()
        return self.tree.to_dict(lambda s: s.to_dict(reference=False))

    def update_from_dict(self, d: dict[str, Any]) -> None:
        """Take in a shard's nodes (to_dict output of a tree made with the same `make`)."""
        self._flush()
        ref = self.make().reference
        self.tree.update(BatchTree.from_dict(d, lambda v: TrajectoryStats.from_dict(v, reference=ref)))


def _copy(x: Moments | MeanAccumulator) -> Moments | MeanAccumulator:
    return x.copy() if isinstance(x, Moments) else MeanAccumulator().merge(x)


def final_quality(samples: torch.Tensor, reference: Moments) -> dict[str, Any]:
    """Pixel Fréchet distance of the final samples to the reference images, with both counts beside it."""
    if samples.shape[0] < 2:
        return {"fd": None, "n_samples": int(samples.shape[0]), "n_reference": reference.count,
                "warning": "a Fréchet distance needs at least 2 samples"}
    m = Moments.from_samples(samples.to(torch.float64), full=reference.full)
    out = {"fd": fd_moments(m, reference), "n_samples": int(samples.shape[0]), "n_reference": reference.count,
           "extractor": "pixels"}
    if not reference.full:
        out["note"] = f"diagonal Gaussians (images have more than {FULL_COVARIANCE_MAX} values)"
    if not math.isfinite(out["fd"]):
        out["fd"] = None
    return out




def reference_moments(data: str, data_size: int | None) -> Moments:
    """Pixel Moments of the held-out split (full covariance up to FULL_COVARIANCE_MAX values per image).

    Computed once per (data set, size) in a process (a worker runs many jobs on the same split) and handed
    out as a copy of its own, so a job that changes its Moments changes nobody else's."""
    return _reference_moments(data, data_size).copy()


@lru_cache(maxsize=8)
def _reference_moments(data: str, data_size: int | None) -> Moments:
    heldout = load_dataset(data, "heldout", size=data_size).images
    return Moments.from_samples(heldout.to(torch.float64), full=heldout[0].numel() <= FULL_COVARIANCE_MAX)


def sample_quality(
    samples: torch.Tensor, data: str, data_size: int | None, which: list[str], store: Any = None,
    device: str | torch.device = "cpu", reference: Moments | None = None, seed: int = 0,
) -> dict[str, Any]:
    """Final figures of a sample job against the held-out split: "fd" (pixels) and/or "fid" (Inception, cached reference).

    Each figure carries its sample counts; FID below 2,048 samples carries a warning and KID.
    """
    out: dict[str, Any] = {}
    if "fd" in which:
        reference = reference if reference is not None else reference_moments(data, data_size)
        out["fd"] = final_quality(samples, reference)
    if "fid" in which:
        feats, ex = reference_features(data, "heldout", data_size, None, "inception", store, device)
        out["fid"] = quality(samples, feats, ex, seed=seed)
    return out

__all__ = ["BASIC", "EXTRA", "MOMENT_STEPS", "TrajectoryStats", "TrajectoryTree", "final_quality", "moment_steps", "reference_moments", "sample_quality"]
