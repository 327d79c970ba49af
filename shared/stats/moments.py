"""Streaming, mergeable sufficient statistics of a set of samples (float64).

`Moments` keeps, for samples flattened to D values each: the count, the
per-value mean, the per-value centred sum of squares (M2) and, with
`full=True`, the centred sum of outer products (D, D) needed for Fréchet
distances. Batches and shards are combined with Chan et al.'s parallel
formula rather than raw sums, because raw sums of squares lose digits to
cancellation when the mean is large against the spread; Chan's update is
exact algebra, so merging shards equals one pass over all samples up to
float64 rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple

import torch

from scalespace import ScalespaceError
from scalespace.kernels import dispatch
from scalespace.stats._checks import as_f64, batch_2d, device_batch_2d

FORMAT = "scalespace.moments/1"


@dataclass(eq=False)
class Moments:
    """Sufficient statistics of samples with `dim` values each.

    Fields: `count` samples seen; `center` (D,) running mean; `m2` (D,)
    centred sum of squares per value; `comoment` (D, D) centred sum of outer
    products, present only when `full`; `meta` free-form strings (e.g. the
    feature extractor and its digest) that must agree when merging. Units are
    those of the samples (squared for m2/comoment). Memory is O(D^2) with
    `full=True`: fine for 2048-d features, not for large images' pixels.
    """

    dim: int
    full: bool = False
    count: int = 0
    center: torch.Tensor | None = None
    m2: torch.Tensor | None = None
    comoment: torch.Tensor | None = None
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.dim, int) or self.dim < 1:
            raise ScalespaceError(f"dim: must be a positive int, got {self.dim!r}; pass the values per sample")
        d = self.dim
        self.center = torch.zeros(d, dtype=torch.float64) if self.center is None else self.center
        self.m2 = torch.zeros(d, dtype=torch.float64) if self.m2 is None else self.m2
        if self.full and self.comoment is None:
            self.comoment = torch.zeros(d, d, dtype=torch.float64)
        if not self.full:
            self.comoment = None

    @classmethod
    def from_samples(cls, x: Any, full: bool = False, meta: dict[str, str] | None = None) -> Moments:
        """Moments of one batch x (B, ...), each sample flattened to D values."""
        t = batch_2d(x, "x")
        return cls(dim=t.shape[1], full=full, meta=dict(meta or {})).update(t)

    # -- accumulation -------------------------------------------------------

    def update(self, x: Any) -> Moments:
        """Add a batch x (B, ...) of samples, each flattened to D values; returns self.

        A tensor on a device where the kernels run (a GPU, see
        scalespace.kernels.dispatch) is reduced there by the statistics kernels
        (float64 accumulation); only the (D,) and (D, D) results move to the
        CPU. Anything else is reduced in float64 on the CPU.
        """
        t = device_batch_2d(x, "x")
        if t.shape[1] != self.dim:
            raise ScalespaceError(
                f"x: samples have {t.shape[1]} values but these Moments hold dim={self.dim}; pass samples of the same shape"
            )
        c, m2b, co = batch_moments(t, self.full)
        self._absorb(t.shape[0], c, m2b, co)
        return self

    def merge(self, other: Moments) -> Moments:
        """A new Moments of the union of both sample sets (neither input changes)."""
        if not isinstance(other, Moments):
            raise ScalespaceError(f"other: expected Moments, got {type(other).__name__}; pass a Moments")
        if other.dim != self.dim or other.full != self.full:
            raise ScalespaceError(
                f"other: dim/full ({other.dim}, {other.full}) differ from ({self.dim}, {self.full}); merge shards of one kind"
            )
        if other.meta != self.meta:
            raise ScalespaceError(f"other: meta {other.meta} differs from {self.meta}; merge shards made the same way")
        out = self.copy()
        out._absorb(other.count, other.center, other.m2, other.comoment)
        return out

    def _absorb(self, nb: int, cb: torch.Tensor, m2b: torch.Tensor, cob: torch.Tensor | None) -> None:
        # Chan, Golub & LeVeque (1979): combine (n, mean, M2) of two disjoint sets.
        if nb == 0:
            return
        na = self.count
        n = na + nb
        delta = cb - self.center
        w = na * nb / n
        self.center = self.center + delta * (nb / n)
        self.m2 = self.m2 + m2b + delta * delta * w
        if self.full:
            self.comoment = self.comoment + cob + torch.outer(delta, delta) * w
        self.count = n

    def copy(self) -> Moments:
        """A deep copy."""
        return Moments(
            dim=self.dim,
            full=self.full,
            count=self.count,
            center=self.center.clone(),
            m2=self.m2.clone(),
            comoment=None if self.comoment is None else self.comoment.clone(),
            meta=dict(self.meta),
        )

    # -- statistics ---------------------------------------------------------

    def _need(self, n: int, what: str) -> None:
        if self.count < n:
            raise ScalespaceError(f"Moments.count: {what} needs at least {n} samples, have {self.count}; update() with more")

    @property
    def sum(self) -> torch.Tensor:
        """(D,) sum of the samples."""
        return self.center * self.count

    def mean(self) -> torch.Tensor:
        """(D,) per-value mean, float64."""
        self._need(1, "mean")
        return self.center.clone()

    def var(self, unbiased: bool = False) -> torch.Tensor:
        """(D,) per-value variance; population (/n) by default, unbiased (/(n-1)) on request."""
        self._need(2 if unbiased else 1, "var")
        return self.m2 / (self.count - 1 if unbiased else self.count)

    def global_mean(self) -> float:
        """Mean over all count * D values."""
        self._need(1, "global_mean")
        return float(self.center.mean())

    def global_var(self, unbiased: bool = False) -> float:
        """Variance over all count * D values pooled (between- plus within-value spread)."""
        self._need(1, "global_var")
        n = self.count * self.dim
        if unbiased and n < 2:
            raise ScalespaceError("Moments.count: unbiased global_var needs at least 2 values; update() with more")
        g = self.center.mean()
        ss = self.m2.sum() + self.count * ((self.center - g) ** 2).sum()
        return float(ss / (n - 1 if unbiased else n))

    def cov(self) -> torch.Tensor:
        """(D, D) unbiased covariance (/(n-1)); needs full=True."""
        if not self.full:
            raise ScalespaceError("Moments.full: covariance needs full=True; build the Moments with full=True")
        self._need(2, "cov")
        return self.comoment / (self.count - 1)

    # -- serialisation ------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (floats as lists; float64 round-trips exactly through json)."""
        return {
            "format": FORMAT,
            "dim": self.dim,
            "full": self.full,
            "count": self.count,
            "mean": self.center.tolist(),
            "m2": self.m2.tolist(),
            "comoment": None if self.comoment is None else self.comoment.tolist(),
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Moments:
        """Inverse of to_dict; checks format and shapes."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ScalespaceError(f"moments dict: format must be {FORMAT!r}; pass the output of Moments.to_dict()")
        try:
            dim, full, count = int(d["dim"]), bool(d["full"]), int(d["count"])
            center, m2 = as_f64(d["mean"], "mean"), as_f64(d["m2"], "m2")
            co = None if d.get("comoment") is None else as_f64(d["comoment"], "comoment")
            meta = {str(k): str(v) for k, v in dict(d.get("meta") or {}).items()}
        except (KeyError, TypeError, ValueError) as e:
            raise ScalespaceError(f"moments dict: malformed ({e}); pass the output of Moments.to_dict()") from None
        if center.shape != (dim,) or m2.shape != (dim,) or count < 0:
            raise ScalespaceError(f"moments dict: mean/m2 must have length dim={dim}; pass an unmodified to_dict() output")
        if full and (co is None or co.shape != (dim, dim)):
            raise ScalespaceError(f"moments dict: comoment must be {dim}x{dim} when full; pass an unmodified to_dict() output")
        return cls(dim=dim, full=full, count=count, center=center, m2=m2, comoment=co, meta=meta)


def batch_moments(t: torch.Tensor, full: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(mean (D,), centred sum of squares (D,), centred comoment (D, D) or None) of t (B, D), float64 on the CPU.

    Reduced where t lives: by the statistics kernels (scalespace.kernels.moments,
    scalespace.kernels.second_moment) where scalespace.kernels.dispatch runs them,
    otherwise by the float64 torch references. Two passes: the batch mean,
    then the sums of the centred values (no cancellation in the squares).
    """
    s, _ = dispatch.pixel_moments(t)
    c = s / t.shape[0]
    _, m2 = dispatch.pixel_moments(t, c)
    co = dispatch.second_moment(t, c) if full else None
    return c.cpu(), m2.cpu(), None if co is None else co.cpu()


def merge_all(shards: Iterable[Moments]) -> Moments:
    """Merge a non-empty iterable of Moments shards into one."""
    it = iter(shards)
    try:
        out = next(it).copy()
    except StopIteration:
        raise ScalespaceError("shards: nothing to merge; pass at least one Moments") from None
    for m in it:
        out = out.merge(m)
    return out


class BatchStats(NamedTuple):
    """Per-value mean/var with the sample shape (x.shape[1:]), and pooled scalars."""

    mean: torch.Tensor
    var: torch.Tensor
    global_mean: float
    global_var: float


def batch_stats(x: Any, unbiased: bool = False) -> BatchStats:
    """Statistics of one batch x (B, ...) in float64; var is population unless `unbiased`."""
    raw = as_f64(x, "x")
    t = batch_2d(raw, "x")
    if unbiased and t.shape[0] < 2:
        raise ScalespaceError("x: unbiased variance needs at least 2 samples; pass a larger batch or unbiased=False")
    shape = tuple(raw.shape[1:])
    ddof = 1 if unbiased else 0
    mean = t.mean(dim=0)
    var = t.var(dim=0, correction=ddof)
    return BatchStats(
        mean=mean.reshape(shape),
        var=var.reshape(shape),
        global_mean=float(t.mean()),
        global_var=float(t.reshape(-1).var(correction=ddof)),
    )
