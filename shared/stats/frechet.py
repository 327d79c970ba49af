"""Gaussian distances and information quantities, all in float64.

The Fréchet distance between N(mu1, S1) and N(mu2, S2) is

    |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1^1/2 S2 S1^1/2).

The trace term is taken from the eigenvalues of the symmetric PSD matrix
S1^1/2 S2 S1^1/2 (symmetric eigensolvers are stable and never return
complex parts, unlike a general matrix square root of S1 S2), with
negative rounding noise clamped to 0.

`FrechetReference` measures many moment sets against one reference Gaussian
(its square root computed once); `fd_moments`, `second_moment` and
`moment_matched` are the per-Moments figures built on it (the last with
the finite-sample bias of ln det S removed, `logdet_bias`).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from scalespace import ScalespaceError
from scalespace.stats._checks import as_f64, check_finite
from scalespace.stats.moments import Moments


def _mean_cov(mu: Any, cov: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    m = check_finite(as_f64(mu, f"mu{name}"), f"mu{name}")
    c = check_finite(as_f64(cov, f"cov{name}"), f"cov{name}")
    if m.ndim != 1 or m.numel() == 0:
        raise ScalespaceError(f"mu{name}: must be a non-empty vector (D,), got shape {tuple(m.shape)}; pass the mean")
    d = m.shape[0]
    if c.shape != (d, d):
        raise ScalespaceError(f"cov{name}: shape {tuple(c.shape)} does not match mu{name} (D={d}); pass a ({d}, {d}) covariance")
    # Accumulated covariances are symmetric only up to rounding; eigh wants exact symmetry.
    return m, (c + c.T) / 2


def _psd_sqrt(s: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric PSD matrix; negative eigenvalues (noise) -> 0."""
    w, v = torch.linalg.eigh(s)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def trace_sqrt_product(cov1: torch.Tensor, cov2: torch.Tensor) -> float:
    """tr sqrt(S1^1/2 S2 S1^1/2) for symmetric PSD float64 (D, D) matrices."""
    r = _psd_sqrt(cov1)
    m = r @ cov2 @ r
    w = torch.linalg.eigvalsh((m + m.T) / 2)
    return float(w.clamp(min=0).sqrt().sum())


def frechet_distance(mu1: Any, cov1: Any, mu2: Any, cov2: Any) -> float:
    """Fréchet (2-Wasserstein squared) distance between two Gaussians.

    mu1, mu2: (D,); cov1, cov2: (D, D) symmetric PSD, in the samples' units
    (the result is in squared units). Computed in float64; tiny negative
    rounding results are clamped to 0 since the true value is >= 0.
    """
    m1, c1 = _mean_cov(mu1, cov1, "1")
    m2, c2 = _mean_cov(mu2, cov2, "2")
    if m1.shape != m2.shape:
        raise ScalespaceError(f"mu2: dimension {m2.shape[0]} differs from mu1's {m1.shape[0]}; compare features of one extractor")
    diff = m1 - m2
    fd = float(diff @ diff) + float(torch.trace(c1) + torch.trace(c2)) - 2.0 * trace_sqrt_product(c1, c2)
    return max(fd, 0.0)


def frechet_from_moments(m1: Moments, m2: Moments) -> float:
    """Fréchet distance between the moment-matched Gaussians of two full Moments (unbiased covs)."""
    for name, m in (("m1", m1), ("m2", m2)):
        if not isinstance(m, Moments) or not m.full:
            raise ScalespaceError(f"{name}: needs Moments built with full=True; rebuild it with full=True")
    if m1.dim != m2.dim:
        raise ScalespaceError(f"m2: dim {m2.dim} differs from m1's {m1.dim}; compare features of one extractor")
    return frechet_distance(m1.mean(), m1.cov(), m2.mean(), m2.cov())


def _logdet(cov: torch.Tensor, jitter: float, what: str) -> torch.Tensor:
    """log det of a covariance (D, D) or of diag(variances) for a vector (D,), after adding jitter."""
    if jitter < 0:
        raise ScalespaceError(f"jitter: must be >= 0, got {jitter}; pass e.g. 1e-6")
    if cov.ndim == 1:
        v = cov + jitter
        if bool((v <= 0).any()):
            raise ScalespaceError(f"cov: {what} has zero/negative variances; pass jitter=1e-6 or use more samples")
        return v.log().sum()
    c = (cov + cov.T) / 2 + jitter * torch.eye(cov.shape[0], dtype=cov.dtype)
    sign, logdet = torch.linalg.slogdet(c)
    if float(sign) <= 0:
        raise ScalespaceError(f"cov: {what} covariance is singular; pass jitter=1e-6 or use more samples than dimensions")
    return logdet


def _cov_arg(cov: Any) -> torch.Tensor:
    c = check_finite(as_f64(cov, "cov"), "cov")
    if c.ndim == 1 and c.numel() > 0:
        return c
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.numel() == 0:
        raise ScalespaceError(f"cov: expected (D, D) covariance or (D,) variances, got shape {tuple(c.shape)}; pass a square matrix")
    return c


def kl_to_standard_normal(mu: Any, cov: Any, jitter: float = 0.0) -> float:
    """KL(N(mu, cov) || N(0, I)) in nats, float64.

    mu: (D,); cov: (D, D), or (D,) variances for a diagonal Gaussian.
    0.5 * (tr cov + |mu|^2 - D - log det cov). A singular cov raises unless
    `jitter` (added to the diagonal, in squared units) makes it regular.
    """
    c = _cov_arg(cov)
    m = check_finite(as_f64(mu, "mu"), "mu")
    d = c.shape[0]
    if m.shape != (d,):
        raise ScalespaceError(f"mu: shape {tuple(m.shape)} does not match cov (D={d}); pass a ({d},) mean")
    tr = c.sum() if c.ndim == 1 else torch.trace(c)
    tr = tr + jitter * d
    return float(0.5 * (tr + m @ m - d - _logdet(c, jitter, "N(mu, cov)")))


def gaussian_entropy(cov: Any, jitter: float = 0.0) -> float:
    """Differential entropy of N(., cov) in nats: 0.5 * (D ln(2 pi e) + log det cov).

    cov: (D, D), or (D,) variances; `jitter` as in kl_to_standard_normal.
    """
    c = _cov_arg(cov)
    d = c.shape[0]
    return float(0.5 * (d * math.log(2 * math.pi * math.e) + _logdet(c, jitter, "entropy")))


class FrechetReference:
    """Fréchet distances of many sample sets to one reference Gaussian, its square root computed once.

    FD = |mu - mu_r|^2 + tr S + tr S_r - 2 tr sqrt(S_r^1/2 S S_r^1/2), the
    trace term from the eigenvalues of the symmetric S_r^1/2 S S_r^1/2 clamped
    at 0 (as in frechet_distance), so each distance costs one symmetric
    eigenvalue solve instead of two full eigendecompositions. Moments without a
    full covariance (or a diagonal reference) use the diagonal-Gaussian form
    sum (mu - mu_r)^2 + sum (sqrt v - sqrt v_r)^2.
    """

    def __init__(self, ref: Moments):
        self.ref = ref
        self.mu = ref.mean()
        self.var = ref.var(unbiased=True)
        self.root = None
        if ref.full:
            c = ref.cov()
            w, v = torch.linalg.eigh((c + c.T) / 2)
            self.root = (v * w.clamp(min=0).sqrt()) @ v.T
            self.trace = float(torch.trace(c))

    def __call__(self, m: Moments, scale: float = 1.0) -> float:
        """FD between N(scale mu_m, scale^2 S_m) and the reference (squared units of the samples)."""
        d2 = float(((m.mean() * scale - self.mu) ** 2).sum())
        if self.root is not None and m.full:
            c = m.cov() * scale**2
            p = self.root @ c @ self.root
            tr_sqrt = float(torch.linalg.eigvalsh((p + p.T) / 2).clamp(min=0).sqrt().sum())
            return max(d2 + float(torch.trace(c)) + self.trace - 2 * tr_sqrt, 0.0)
        v = m.var(unbiased=True) * scale**2
        return d2 + float(((v.sqrt() - self.var.sqrt()) ** 2).sum())

    def of_samples(self, x: torch.Tensor) -> float:
        """FD between the Gaussian of samples x (n, ...) (unbiased covariance) and the reference.

        With fewer samples than values the sample covariance S = X^T X / (n - 1) has
        rank below n, and the nonzero eigenvalues of S_r^1/2 S S_r^1/2 are those of
        the n x n matrix (X S_r^1/2)(X S_r^1/2)^T / (n - 1): a small eigenproblem
        (what makes bootstrap intervals of FD affordable for large images).
        """
        x = x.reshape(x.shape[0], -1).to(torch.float64)
        n = x.shape[0]
        if self.root is None or n > x.shape[1]:
            return self(Moments.from_samples(x, full=self.root is not None))
        mu = x.mean(0)
        xc = (x - mu) / math.sqrt(n - 1)
        y = xc @ self.root
        tr_sqrt = float(torch.linalg.eigvalsh(y @ y.T).clamp(min=0).sqrt().sum())
        return max(float(((mu - self.mu) ** 2).sum()) + float((xc * xc).sum()) + self.trace - 2 * tr_sqrt, 0.0)


def fd_moments(a: Moments, b: Moments, scale: float = 1.0) -> float:
    """Fréchet distance between the Gaussians of two Moments, the first scaled by `scale` (see FrechetReference)."""
    return FrechetReference(b)(a, scale)


def second_moment(m: Moments) -> float:
    """E|x|^2 per sample (the energy a relative distance is measured against)."""
    return float((m.mean() ** 2).sum() + m.var(unbiased=True).sum())


#: a covariance whose smallest eigenvalue is below this fraction of its largest counts as singular
SINGULAR = 1e-10


def logdet_bias(d: int, n: int, full: bool = True) -> float:
    """E[ln det S] - ln det Sigma for S the unbiased sample covariance of n Gaussian samples in d dimensions.

    (n - 1) S ~ Wishart_d(Sigma, n - 1), and E ln det W = ln det Sigma + d ln 2 +
    sum_{i=1..d} psi((n - i) / 2) for W ~ Wishart_d(Sigma, n - 1), so

        E[ln det S] = ln det Sigma + sum_{i=1..d} psi((n - i) / 2) + d ln(2 / (n - 1)).

    The bias is negative (S's small eigenvalues scatter low): -8.9 nats at
    n = 256, d = 64, which put 4.5 nats into a plug-in KL whose truth is 0. For the diagonal form (full=False: the product of the d
    unbiased variances, each (n - 1) s^2 / sigma^2 ~ chi^2_{n-1}) it is
    d (psi((n - 1) / 2) + ln(2 / (n - 1))). Needs n > d (full) or n >= 2.
    """
    if n < 2 or (full and n <= d):
        raise ScalespaceError(f"n: {n} samples give a singular covariance in {d} dimensions; use more samples than dimensions")
    psi = torch.special.digamma
    if full:
        i = torch.arange(1, d + 1, dtype=torch.float64)
        return float(psi((n - i) / 2).sum()) + d * math.log(2 / (n - 1))
    return d * (float(psi(torch.tensor((n - 1) / 2, dtype=torch.float64))) + math.log(2 / (n - 1)))


def moment_matched(m: Moments) -> tuple[float | None, float | None]:
    """Entropy of the moment-matched Gaussian and its KL to N(0, I), nats, corrected for finite n; None when singular.

    Plug-in figures from the sample mean and unbiased covariance S of n
    samples are biased: ln det S by logdet_bias(d, n) (-8.9 nats at n = 256,
    d = 64), and |mean|^2 by tr(Sigma) / n, while tr S is unbiased. So

        entropy = 0.5 (d ln(2 pi e) + ln det S - logdet_bias)
        KL      = 0.5 (tr S + |mean|^2 - tr S / n - d - ln det S + logdet_bias)

    have the right expectation for Gaussian samples (the KL can fall below 0
    by its noise when the truth is near 0; it is not clamped, which would
    bias it up again). For non-Gaussian data the log-det correction is the
    Gaussian one, still the leading finite-sample term.

    Singular covariances are common (constant border pixels at t = 0, fewer
    samples than values), and whether rounding makes their log-determinant
    finite would otherwise depend on the batching: a relative eigenvalue floor
    decides it the same way for every shard split. n <= d (full) is singular.
    """
    lam = torch.linalg.eigvalsh(m.cov()) if m.full else m.var(unbiased=True)
    d, n = lam.numel(), m.count
    if (m.full and n <= d) or float(lam.min()) <= SINGULAR * max(float(lam.max()), 1e-300):
        return None, None
    logdet = float(lam.log().sum()) - logdet_bias(d, n, m.full)
    entropy = 0.5 * (d * math.log(2 * math.pi * math.e) + logdet)
    tr = float(lam.sum())
    kl = 0.5 * (tr + float((m.mean() ** 2).sum()) - tr / n - d - logdet)
    return entropy, kl


def kl_gaussians(mu_p: Any, cov_p: Any, mu_q: Any, cov_q: Any) -> float:
    """KL(N(mu_p, cov_p) || N(mu_q, cov_q)) in nats, float64.

    mu: (D,); cov: (D, D), or (D,) variances for a diagonal Gaussian (both
    the same form). 0.5 * (tr(cov_q^-1 cov_p) + d^T cov_q^-1 d - D +
    log det cov_q - log det cov_p), d = mu_q - mu_p, through a Cholesky
    factor of cov_q. Both covariances must be regular (positive definite).
    """
    cp, cq = _cov_arg(cov_p), _cov_arg(cov_q)
    mp, mq = check_finite(as_f64(mu_p, "mu_p"), "mu_p"), check_finite(as_f64(mu_q, "mu_q"), "mu_q")
    d = cq.shape[0]
    if cp.shape != cq.shape or mp.shape != (d,) or mq.shape != (d,):
        raise ScalespaceError(f"kl_gaussians: shapes mu_p {tuple(mp.shape)}, cov_p {tuple(cp.shape)}, mu_q "
                              f"{tuple(mq.shape)}, cov_q {tuple(cq.shape)} do not match; pass one dimension D")
    dm = mq - mp
    if cq.ndim == 1:
        if bool((cq <= 0).any()):
            raise ScalespaceError("cov_q: zero/negative variances; the reference Gaussian must be regular")
        return float(0.5 * ((cp / cq).sum() + (dm * dm / cq).sum() - d + cq.log().sum() - _logdet(cp, 0.0, "N(mu_p, cov_p)")))
    chol, info = torch.linalg.cholesky_ex((cq + cq.T) / 2)
    if int(info) != 0:
        raise ScalespaceError("cov_q: not positive definite; the reference Gaussian must be regular")
    tr = torch.trace(torch.cholesky_solve((cp + cp.T) / 2, chol))
    maha = float((dm[:, None] * torch.cholesky_solve(dm[:, None], chol)).sum())
    logdet_q = 2 * torch.log(torch.diagonal(chol)).sum()
    return float(0.5 * (tr + maha - d + logdet_q - _logdet(cp, 0.0, "N(mu_p, cov_p)")))
