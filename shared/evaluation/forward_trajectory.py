"""The forward trajectory on many samples, and its Lyapunov sequences.

For data samples u_0 (training images picked by sample id) the forward pass
draws u_t = A_t u_0 + sigma_t z at every evaluated index t, with the SAME z
for every t: each t's estimate is still unbiased, and the differences between
neighbouring steps, which decide monotonicity, are far less noisy than the
values themselves (common random numbers). The oracle pass at each t gives
log p_t(u_t) and the posterior entropy over training indices, whence

    marginal entropy  H(p_t)          = -E log p_t(u_t)
    information loss  H(u_0 | u_t)    =  E[-sum_j w_j ln w_j]
    KL(p_t || N(0,I))                 =  E[log p_t(u_t) - log N(u_t; 0, I)]

as Monte Carlo means with standard errors. With u_0 uniform over n training
images, H(p_t) also equals H(u_t | u_0) + ln n - H(u_0 | u_t) (the chain rule
both ways round); H(u_t | u_0) is known in closed form and the posterior
entropy lies in [0, ln n], so this identity estimate (marginal_entropy_identity)
has a far smaller standard error than -E log p_t, whose per-sample values
scatter by about sqrt(D / 2) nats. Every per-step accumulator merges
exactly across shards (Moments, MeanAccumulator, integer histograms), so a
trajectory split over workers gives the same figures as one pass. The paired
steady-state draws come from the process (Process.steady_draw), the Fréchet
figures of each step from scalespace.stats.frechet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from scalespace import ScalespaceError
from scalespace.noise import Stream, normal, uniform_int
from scalespace.processes.base import Process
from scalespace.stats.batch_tree import BatchTree
from scalespace.stats.entropy import MeanAccumulator, histogram_entropy
from scalespace.stats.frechet import FrechetReference, moment_matched, second_moment
from scalespace.stats.marginals import MarginalDensity, log_standard_normal
from scalespace.stats.moments import Moments

FORMAT = "scalespace.forward_trajectory/2"
#: older layouts from_dict still reads (/1: without n_train)
READABLE_FORMATS = ("scalespace.forward_trajectory/1", FORMAT)
#: per-sample measures accumulated at each index
MEASURES = ("log_p", "post_entropy", "kl", "hist_entropy")
#: full covariances up to this many values per image; diagonal Gaussians above (memory D^2 per step)
FULL_COVARIANCE_MAX = 1024
HIST_BINS = 32


def eval_indices(T: int, count: int) -> list[int]:
    """About `count` + 1 indices from 0 to T (both included), ascending and evenly spaced."""
    count = max(1, min(int(count), T))
    return sorted({round(k * T / count) for k in range(count + 1)})


def marginal_path(process: Process, u0: torch.Tensor, indices: list[int], ids: torch.Tensor | None) -> dict[int, torch.Tensor]:
    """E[u_i | u_0] for each index (float64); osmosis is evolved once, interval by interval."""
    return process.marginal_means(u0, indices, ids)


@dataclass
class GreyHistogram:
    """Pooled grey-value counts of all pixels over `bins` equal bins of [lo, hi], plus out-of-range counts."""

    lo: float
    hi: float
    bins: int

    def counts(self, u: torch.Tensor) -> torch.Tensor:
        x = u.detach().to(torch.float64).reshape(-1)
        idx = ((x - self.lo) * (self.bins / (self.hi - self.lo))).floor()
        idx = torch.where(x < self.lo, -1, torch.where(x >= self.hi, self.bins, idx)).long() + 1
        return torch.bincount(idx, minlength=self.bins + 2).to(torch.float64)


class ForwardTrajectory:
    """Streaming, mergeable statistics of the forward process at the evaluated indices.

    Per index: pixel Moments (full covariance up to FULL_COVARIANCE_MAX values),
    MeanAccumulators of each per-sample measure, paired differences to the next
    index, and optionally the pooled grey-value histogram. Plus the Moments of
    the data u_0 and of the paired steady-state draws. `n_train`: the number of
    training images u_0 is drawn from uniformly and the oracle density is the
    mixture over (what the identity estimate of H(p_t) needs; None: no identity).
    """

    def __init__(self, indices: list[int], dim: int, grey: GreyHistogram | None = None, full: bool | None = None,
                 n_train: int | None = None):
        if not indices:
            raise ScalespaceError("indices: the trajectory needs at least one index")
        self.indices = sorted(int(i) for i in indices)
        self.dim = int(dim)
        self.full = self.dim <= FULL_COVARIANCE_MAX if full is None else bool(full)
        self.grey = grey
        self.n_train = None if n_train is None else int(n_train)
        self.data = Moments(self.dim, self.full)
        self.steady = Moments(self.dim, self.full)
        self.moments = {i: Moments(self.dim, self.full) for i in self.indices}
        self.values: dict[str, dict[int, MeanAccumulator]] = {m: {} for m in MEASURES}
        self.diffs: dict[str, dict[int, MeanAccumulator]] = {m: {} for m in MEASURES}
        self.grey_counts: dict[int, torch.Tensor] = {}

    @property
    def count(self) -> int:
        return self.data.count

    def add(self, u0: torch.Tensor, steady: torch.Tensor, states: dict[int, torch.Tensor], values: dict[str, dict[int, torch.Tensor]]) -> None:
        """One batch: u0 and steady (B, ...), u_t per index, per-sample values[measure][index] (B,)."""
        self.data.update(u0)
        self.steady.update(steady)
        for i in self.indices:
            self.moments[i].update(states[i])
            if self.grey is not None:
                c = self.grey.counts(states[i])
                self.grey_counts[i] = self.grey_counts.get(i, torch.zeros_like(c)) + c
        for m, by_index in values.items():
            for i, v in by_index.items():
                self.values[m].setdefault(i, MeanAccumulator()).update(v)
            for a, b in zip(self.indices[:-1], self.indices[1:]):
                if a in by_index and b in by_index:
                    self.diffs[m].setdefault(a, MeanAccumulator()).update(by_index[b] - by_index[a])

    # --- merging and serialisation ------------------------------------------------------------
    def merge(self, other: ForwardTrajectory) -> ForwardTrajectory:
        """The statistics of both shards' samples together (neither input changes)."""
        if other.indices != self.indices or other.dim != self.dim or other.full != self.full:
            raise ScalespaceError("trajectory: shards differ in indices or image size; merge shards of one evaluation")
        if other.n_train != self.n_train:
            raise ScalespaceError(f"trajectory: shards differ in n_train ({self.n_train} vs {other.n_train}); "
                                  "merge shards of one evaluation, all written by one version")
        out = ForwardTrajectory(self.indices, self.dim, self.grey, self.full, self.n_train)
        out.data, out.steady = self.data.merge(other.data), self.steady.merge(other.steady)
        out.moments = {i: self.moments[i].merge(other.moments[i]) for i in self.indices}
        for table in ("values", "diffs"):
            mine, theirs, dest = getattr(self, table), getattr(other, table), getattr(out, table)
            for m in MEASURES:
                for i in set(mine[m]) | set(theirs[m]):
                    a, b = mine[m].get(i), theirs[m].get(i)
                    dest[m][i] = a.merge(b) if a and b else MeanAccumulator().merge(a or b)
        for i in set(self.grey_counts) | set(other.grey_counts):
            out.grey_counts[i] = self.grey_counts.get(i, 0) + other.grey_counts.get(i, 0)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "indices": self.indices,
            "dim": self.dim,
            "full": self.full,
            "n_train": self.n_train,
            "grey": None if self.grey is None else [self.grey.lo, self.grey.hi, self.grey.bins],
            "data": self.data.to_dict(),
            "steady": self.steady.to_dict(),
            "moments": {str(i): m.to_dict() for i, m in self.moments.items()},
            "values": {m: {str(i): a.to_dict() for i, a in d.items()} for m, d in self.values.items()},
            "diffs": {m: {str(i): a.to_dict() for i, a in d.items()} for m, d in self.diffs.items()},
            "grey_counts": {str(i): c.tolist() for i, c in self.grey_counts.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ForwardTrajectory:
        if not isinstance(d, dict) or d.get("format") not in READABLE_FORMATS:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise ScalespaceError(f"trajectory dict: format {got!r} is not one of {READABLE_FORMATS}; "
                                  "pass ForwardTrajectory.to_dict() output")
        g = d.get("grey")
        # layout /1 has no n_train: such a trajectory gives no identity estimate of H(p_t)
        out = cls(d["indices"], d["dim"], GreyHistogram(*g) if g else None, d["full"], d.get("n_train"))
        out.data, out.steady = Moments.from_dict(d["data"]), Moments.from_dict(d["steady"])
        out.moments = {int(i): Moments.from_dict(m) for i, m in d["moments"].items()}
        for table in ("values", "diffs"):
            setattr(out, table, {m: {int(i): MeanAccumulator.from_dict(a) for i, a in d[table].get(m, {}).items()} for m in MEASURES})
        out.grey_counts = {int(i): torch.tensor(c, dtype=torch.float64) for i, c in d.get("grey_counts", {}).items()}
        return out

    # --- figures --------------------------------------------------------------------------------
    def mc(self, measure: str, i: int, sign: float = 1.0) -> tuple[float | None, float | None]:
        """(sign * mean, standard error) of a measure at index i, or (None, None)."""
        a = self.values[measure].get(i)
        if a is None or a.count < 2:
            return None, None
        return sign * a.mean(), a.stderr()

    def entropy_identity(self, process: Process, i: int) -> tuple[float | None, float | None]:
        """H(p_t) = H(u_t | u_0) + ln n_train - H(u_0 | u_t), and its standard error (that of the posterior-entropy mean).

        Holds for u_0 uniform over the n_train training images the oracle
        mixture is built on. (None, None) without n_train, posterior entropies
        or a finite H(u_t | u_0).
        """
        hc = process.conditional_entropy(i)
        il, se = self.mc("post_entropy", i)
        if self.n_train is None or il is None or not math.isfinite(hc):
            return None, None
        return hc + math.log(self.n_train) - il, se

    def rows(self, process: Process) -> list[dict[str, Any]]:
        """One row of figures per evaluated index (nats for entropies, squared pixel units for FD)."""
        times = process.times()
        energy_data = second_moment(self.data)
        to_data, to_steady = FrechetReference(self.data), FrechetReference(self.steady)
        rows = []
        for i in self.indices:
            m = self.moments[i]
            var = m.var(unbiased=True)
            row: dict[str, Any] = {
                "index": i,
                "t": float(times[i]),
                "mean": m.global_mean(),
                "variance": m.global_var(),
                "pixel_variance": float(var.mean()),
                "conditional_entropy": process.conditional_entropy(i),
                "fd_data": to_data(m),
            }
            row["fd_data_relative"] = row["fd_data"] / max(energy_data, 1e-300)
            scale = process.steady_scale(i)
            row["fd_steady"] = None if scale is None else to_steady(m, scale)
            row["marginal_entropy"], row["marginal_entropy_se"] = self.mc("log_p", i, -1.0)
            row["marginal_entropy_identity"], row["marginal_entropy_identity_se"] = self.entropy_identity(process, i)
            row["information_loss"], row["information_loss_se"] = self.mc("post_entropy", i)
            row["kl_standard_normal"], row["kl_standard_normal_se"] = self.mc("kl", i)
            row["histogram_entropy"], _ = self.mc("hist_entropy", i)
            row["gaussian_entropy"], row["kl_gaussian"] = moment_matched(m)
            rows.append(row)
        return rows


def forward_batch(
    process: Process,
    u0: torch.Tensor,
    ids: torch.Tensor,
    seed: int,
    traj: ForwardTrajectory,
    density: MarginalDensity | None = None,
    on_index: Callable[[], None] | None = None,
) -> None:
    """Run the forward process on one batch u0 (B, C, H, W) with sample ids, into `traj`.

    on_index() is called once the marginal means are made and after each index (len(traj.indices) + 1 calls)."""
    ids = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
    u0 = u0.detach().to(torch.float64)
    z = normal(seed, ids, 0, process.shape, Stream.FORWARD).to(torch.float64)
    means = marginal_path(process, u0, traj.indices, ids)
    if on_index is not None:
        on_index()
    states: dict[int, torch.Tensor] = {}
    values: dict[str, dict[int, torch.Tensor]] = {m: {} for m in MEASURES}
    for i in traj.indices:
        u = means[i] + process.sigma(i) * z
        states[i] = u
        values["hist_entropy"][i] = histogram_entropy(u, bins=HIST_BINS)
        r = density.evaluate(i, u) if density is not None else None
        if r is not None:
            log_p, post = r
            values["log_p"][i] = log_p
            values["kl"][i] = log_p - log_standard_normal(u)
            if post is not None:
                values["post_entropy"][i] = post
        if on_index is not None:
            on_index()
    traj.add(u0, process.steady_draw(u0, z, ids), states, values)


def forward_steps(n: int, n_indices: int, batch_size: int = 256) -> int:
    """The steps forward_trajectory reports to on_step: per batch, the marginal means and each index."""
    return -(-n // batch_size) * (n_indices + 1)


def forward_trajectory(
    process: Process,
    train: torch.Tensor,
    n: int,
    seed: int,
    indices: list[int],
    density: MarginalDensity | None = None,
    batch_size: int = 256,
    first_id: int = 0,
    grey: GreyHistogram | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> ForwardTrajectory:
    """The trajectory of samples first_id .. first_id + n - 1; sample k starts from a training image picked by (seed, k).

    on_batch(done, total) follows the batches; on_step(done, total) the steps within them
    (forward_steps: len(indices) + 1 per batch). The batches' statistics merge in the fixed batch tree
    (forward_tree), so a trajectory split into shards of whole batches gives the same figures bit for bit."""
    tree = forward_tree(process, train, n, seed, indices, density, batch_size, first_id, grey, on_batch, on_step)
    return tree.result() or ForwardTrajectory(indices, math.prod(process.shape), grey, n_train=_n_train(train, density))


def _n_train(train: torch.Tensor, density: MarginalDensity | None) -> int | None:
    # the oracle density is the mixture over `train`, which u_0 is drawn from uniformly: the identity for H(p_t) holds
    return len(train) if getattr(density, "kind", None) == "oracle" and getattr(density, "n", None) == len(train) else None


def forward_tree(
    process: Process,
    train: torch.Tensor,
    n: int,
    seed: int,
    indices: list[int],
    density: MarginalDensity | None = None,
    batch_size: int = 256,
    first_id: int = 0,
    grey: GreyHistogram | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> BatchTree[ForwardTrajectory]:
    """forward_trajectory's batches, each a ForwardTrajectory under its batch number (first_id // batch_size on):
    a shard's part, which BatchTree.update joins with the others' and result() merges."""
    n_train = _n_train(train, density)
    tree: BatchTree[ForwardTrajectory] = BatchTree()
    n_batches = -(-n // batch_size)
    total = forward_steps(n, len(indices), batch_size)
    done = [0]

    def on_index() -> None:
        done[0] += 1
        on_step(done[0], total)

    for b in range(n_batches):
        lo = first_id + b * batch_size
        ids = torch.arange(lo, min(lo + batch_size, first_id + n))
        pick = uniform_int(seed, ids, len(train), Stream.DATA_PICK)
        part = ForwardTrajectory(indices, math.prod(process.shape), grey, n_train=n_train)
        forward_batch(process, train[pick], ids, seed, part, density, on_index=on_index if on_step else None)
        tree.add(lo // batch_size, part)
        if on_batch is not None:
            on_batch(b + 1, n_batches)
    return tree


__all__ = [
    "FULL_COVARIANCE_MAX",
    "forward_tree",
    "HIST_BINS",
    "ForwardTrajectory",
    "GreyHistogram",
    "eval_indices",
    "forward_batch",
    "forward_steps",
    "forward_trajectory",
    "marginal_path",
]
