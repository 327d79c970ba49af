"""Entropy estimates, in nats: histogram plug-in, Gaussian closed forms and
Monte Carlo means with standard errors that stream and merge across workers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from scalespace import ScalespaceError
from scalespace.kernels import dispatch
from scalespace.stats._checks import device_batch_2d, vector

FORMAT = "scalespace.mean_accumulator/1"


def histogram_entropy(x: Any, bins: int = 64, range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """Plug-in entropy of each image's grey-value histogram, in nats.

    x: (B, ...) images; each image's values (all channels and pixels) form
    one histogram of `bins` equal bins over `range`. Values outside `range`
    are counted in the edge bins, so every pixel counts and a saturated image
    is not treated as empty. Returns (B,) float64 in [0, ln(bins)]; this is a
    discrete entropy of quantised values, not a differential entropy.
    """
    if not isinstance(bins, int) or bins < 1:
        raise ScalespaceError(f"bins: must be a positive int, got {bins!r}; pass e.g. 64")
    lo, hi = float(range[0]), float(range[1])
    if not hi > lo:
        raise ScalespaceError(f"range: upper bound must exceed lower, got {range}; pass e.g. (-1, 1)")
    # On a device where the kernels run, the counts are made there (scalespace.kernels.histogram, exact
    # integer counts equal to the reference's); only (B, bins) integers come back.
    t = device_batch_2d(x, "x")
    counts = dispatch.histogram(t, bins, lo, hi).cpu().to(torch.float64)
    p = counts / t.shape[1]
    # xlogy gives 0 * log 0 = 0 for empty bins.
    return -torch.special.xlogy(p, p).sum(dim=1)


def conditional_entropy_gaussian(n_values: int, sigma: float | torch.Tensor) -> float | torch.Tensor:
    """Entropy of N(., sigma^2 I) in n_values dimensions: N/2 ln(2 pi e sigma^2), nats.

    sigma is a standard deviation (> 0), a float or a tensor (elementwise).
    """
    if not isinstance(n_values, int) or n_values < 1:
        raise ScalespaceError(f"n_values: must be a positive int, got {n_values!r}; pass the number of pixels")
    if isinstance(sigma, torch.Tensor):
        s = sigma.detach().to(torch.float64)
        if not bool((s > 0).all()):
            raise ScalespaceError("sigma: must be > 0 everywhere; drop the noise-free step (sigma = 0)")
        return 0.5 * n_values * torch.log(2 * math.pi * math.e * s * s)
    if not sigma > 0 or not math.isfinite(sigma):
        raise ScalespaceError(f"sigma: must be finite and > 0, got {sigma}; drop the noise-free step (sigma = 0)")
    return 0.5 * n_values * math.log(2 * math.pi * math.e * sigma * sigma)


@dataclass
class MeanAccumulator:
    """Streaming mean and variance of scalars (float64), mergeable across workers.

    Keeps count, mean (`center`) and centred sum of squares (`m2`), combined
    with Chan's parallel formula, which loses no digits to cancellation when
    values (e.g. log-densities of ~-1e4 nats) are large against their spread.
    """

    count: int = 0
    center: float = 0.0
    m2: float = 0.0

    def update(self, values: Any) -> MeanAccumulator:
        """Add a batch of scalars (a number or a 1-D tensor); returns self."""
        v = vector(values, "values")
        c = v.mean()
        self._absorb(v.numel(), float(c), float(((v - c) ** 2).sum()))
        return self

    def merge(self, other: MeanAccumulator) -> MeanAccumulator:
        """A new accumulator of both value sets."""
        if not isinstance(other, MeanAccumulator):
            raise ScalespaceError(f"other: expected MeanAccumulator, got {type(other).__name__}; pass one")
        out = MeanAccumulator(self.count, self.center, self.m2)
        out._absorb(other.count, other.center, other.m2)
        return out

    def _absorb(self, nb: int, cb: float, m2b: float) -> None:
        if nb == 0:
            return
        n = self.count + nb
        delta = cb - self.center
        self.m2 = self.m2 + m2b + delta * delta * self.count * nb / n
        self.center = self.center + delta * nb / n
        self.count = n

    @property
    def sum(self) -> float:
        """Sum of the values."""
        return self.center * self.count

    def mean(self) -> float:
        """Mean of the values."""
        if self.count < 1:
            raise ScalespaceError("MeanAccumulator.count: no values yet; update() with at least one")
        return self.center

    def var(self, unbiased: bool = True) -> float:
        """Variance of the values, unbiased (/(n-1)) by default."""
        if self.count < (2 if unbiased else 1):
            raise ScalespaceError(f"MeanAccumulator.count: variance needs at least 2 values, have {self.count}; add more")
        return self.m2 / (self.count - 1 if unbiased else self.count)

    def stderr(self) -> float:
        """Standard error of the mean, sqrt(unbiased var / n)."""
        return math.sqrt(self.var(unbiased=True) / self.count)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return {"format": FORMAT, "count": self.count, "mean": self.center, "m2": self.m2}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MeanAccumulator:
        """Inverse of to_dict."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ScalespaceError(f"accumulator dict: format must be {FORMAT!r}; pass MeanAccumulator.to_dict() output")
        try:
            out = cls(int(d["count"]), float(d["mean"]), float(d["m2"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ScalespaceError(f"accumulator dict: malformed ({e}); pass MeanAccumulator.to_dict() output") from None
        if out.count < 0 or out.m2 < 0:
            raise ScalespaceError("accumulator dict: count and m2 must be >= 0; pass MeanAccumulator.to_dict() output")
        return out


def _acc(values: Any, name: str) -> MeanAccumulator:
    if isinstance(values, MeanAccumulator):
        return values
    return MeanAccumulator().update(vector(values, name, min_len=2))


def marginal_entropy_mc(log_p: Any) -> tuple[float, float]:
    """Monte Carlo entropy H = -E[log p(x)] from per-sample log-densities, nats.

    log_p: (B,) log p(x_b) for x_b ~ p (B >= 2), or a MeanAccumulator of
    them. Returns (estimate, standard error).
    """
    acc = _acc(log_p, "log_p")
    return -acc.mean(), acc.stderr()


def information_loss_mc(posterior_entropy: Any) -> tuple[float, float]:
    """Information loss as the mean per-sample posterior entropy H(x_0 | x_t = x_b), nats.

    posterior_entropy: (B,) entropies (B >= 2), or a MeanAccumulator of
    them. Returns (mean, standard error).
    """
    acc = _acc(posterior_entropy, "posterior_entropy")
    return acc.mean(), acc.stderr()
