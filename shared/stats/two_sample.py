"""Two-sample tests: does sample x come from the same distribution as sample y?

`mmd_permutation_test` is a kernel two-sample test (maximum mean
discrepancy, Gretton et al. 2012) that sees the whole distribution, not just
its mean and covariance: with a Gaussian kernel k(a, b) = exp(-|a - b|^2 /
(2 h^2)), MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y) is zero only when the
two distributions are equal.

- Statistic: the unbiased estimate of MMD^2 (within-sample means leave out
  each sample paired with itself), so it is near 0, either sign, when the
  distributions agree.
- Bandwidth h: the median heuristic, the median distance between distinct
  points of the pooled sample (x and y together). It does not depend on which
  point came from which sample, so the permutation test below stays exact.
- p-value: by permutation. Under the null hypothesis the labels "x" and "y"
  are exchangeable; the statistic is recomputed for `permutations` random
  relabellings of the pooled sample (seeded, so the p-value is reproducible)
  and p = (1 + #{permuted >= observed}) / (1 + permutations). The smallest
  p-value is therefore 1 / (1 + permutations).

The pooled kernel matrix is computed once; each relabelling only picks
entries of it, all relabellings at once as one matrix product, so a few
hundred permutations of 2 x 512 samples of 784 values take well under a
second on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from scalespace import ScalespaceError
from scalespace.stats._checks import batch_2d

#: permutations evaluated per matrix product (bounds the memory: chunk x (n + m) float64)
_CHUNK = 128


@dataclass(frozen=True)
class TwoSampleTest:
    """The outcome of a two-sample test."""

    #: the test statistic (unbiased MMD^2 for `mmd_permutation_test`)
    statistic: float
    #: permutation p-value, in [1 / (1 + permutations), 1]
    p_value: float
    #: the Gaussian kernel's bandwidth h (median heuristic on the pooled sample)
    bandwidth: float
    permutations: int
    n_x: int
    n_y: int

    def rejects(self, level: float) -> bool:
        """True when the samples differ at significance `level` (p < level)."""
        return self.p_value < level

    def to_dict(self) -> dict[str, Any]:
        return {"statistic": self.statistic, "p_value": self.p_value, "bandwidth": self.bandwidth,
                "permutations": self.permutations, "n_x": self.n_x, "n_y": self.n_y}


def median_bandwidth(d2: torch.Tensor) -> float:
    """The median heuristic from squared pairwise distances (N, N): the median distance over pairs i < j.

    When more than half the pairs coincide (many repeated points) the median of the positive
    distances is used instead; 0 only when all points are equal.
    """
    n = d2.shape[0]
    iu = torch.triu_indices(n, n, 1)
    dist = d2[iu[0], iu[1]].clamp_min(0).sqrt()
    h = float(dist.median())
    if h <= 0:
        pos = dist[dist > 0]
        h = float(pos.median()) if pos.numel() else 0.0
    return h


def _unbiased_mmd2(k: torch.Tensor, a: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Unbiased MMD^2 for each row of `a` (P, N): 1 where the pooled point is in x, 0 where in y.

    Sums over pairs are quadratic forms of the pooled kernel matrix; the diagonal (k(z, z) = 1)
    is taken out of the within-sample sums.
    """
    b = 1.0 - a
    ka = a @ k  # (P, N)
    kb = b @ k
    sxx = (ka * a).sum(1) - n
    syy = (kb * b).sum(1) - m
    sxy = (ka * b).sum(1)
    return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2 * sxy / (n * m)


def mmd_permutation_test(x: Any, y: Any, *, permutations: int, seed: int,
                         bandwidth: float | None = None, scales: tuple[float, ...] = (1.0,)) -> TwoSampleTest:
    """Kernel two-sample test of x (n, ...) against y (m, ...): unbiased MMD^2 and its permutation p-value.

    Gaussian kernel, bandwidth by the median heuristic on the pooled sample unless `bandwidth`
    is given; `permutations` random relabellings drawn from a generator seeded with `seed`.
    `scales` > 1 entries make the kernel the mean of Gaussian kernels of bandwidths s * h, one per
    entry s: a bandwidth below the median looks at finer structure than the mean and covariance.
    Each sample needs at least 2 points, both the same number of values per point.
    The statistic is symmetric in x and y (swapping them gives the same figure).
    """
    xs, ys = batch_2d(x, "x"), batch_2d(y, "y")
    n, m = xs.shape[0], ys.shape[0]
    if xs.shape[1] != ys.shape[1]:
        raise ScalespaceError(f"y: {ys.shape[1]} values per sample but x has {xs.shape[1]}; "
                              "pass samples of the same shape")
    if n < 2 or m < 2:
        raise ScalespaceError(f"mmd_permutation_test: needs at least 2 samples in each of x and y, got {n} and {m}")
    if isinstance(permutations, bool) or not isinstance(permutations, int) or permutations < 1:
        raise ScalespaceError(f"permutations: must be a positive integer, got {permutations!r}; pass e.g. 500")
    if bandwidth is not None and not bandwidth > 0:
        raise ScalespaceError(f"bandwidth: must be > 0, got {bandwidth!r}; or leave it out for the median heuristic")
    if not scales or not all(s > 0 for s in scales):
        raise ScalespaceError(f"scales: must be positive multiples of the bandwidth, got {scales!r}; pass e.g. (1.0,)")
    z = torch.cat([xs, ys])
    sq = (z * z).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2 * z @ z.T).clamp_min(0)
    d2.fill_diagonal_(0)
    h = float(bandwidth) if bandwidth is not None else median_bandwidth(d2)
    if h <= 0:  # every pooled point is the same: the two samples cannot differ
        return TwoSampleTest(0.0, 1.0, 0.0, permutations, n, m)
    k = sum(torch.exp(-d2 / (2 * (s * h) ** 2)) for s in scales) / len(scales)
    total = n + m
    a0 = torch.zeros(1, total, dtype=torch.float64)
    a0[0, :n] = 1
    observed = float(_unbiased_mmd2(k, a0, n, m)[0])
    g = torch.Generator().manual_seed(seed)
    # permuted >= observed, with a little slack so that float round-off never counts against a tie
    slack = 1e-12 * max(1.0, abs(observed))
    hits = 0
    for lo in range(0, permutations, _CHUNK):
        p = min(_CHUNK, permutations - lo)
        perm = torch.argsort(torch.rand(p, total, generator=g, dtype=torch.float64), dim=1)
        a = (perm < n).to(torch.float64)  # the first n positions of each relabelling form x
        hits += int((_unbiased_mmd2(k, a, n, m) >= observed - slack).sum())
    return TwoSampleTest(observed, (1 + hits) / (1 + permutations), h, permutations, n, m)


__all__ = ["TwoSampleTest", "median_bandwidth", "mmd_permutation_test"]
