"""Exact marginal densities p_t of a forward process, for Monte Carlo entropies.

Two data models whose p_t is known exactly:

- `OracleMarginal`: the empirical distribution of a finite training set. p_t
  is a mixture of n Gaussians N(A_t f_j, sigma_t^2 I); the oracle pass
  gives log p_t(u) and the entropy of the posterior over training
  indices, H(u_0 | u_t = u), in one reduction.
- `GaussianMarginal`: data N(m, s^2 I). For a DCT-diagonal process p_t stays
  Gaussian, N(A_t m, s^2 A_t^2 + sigma_t^2 I), so log p_t, its entropy and the
  information loss have closed forms (the reference the estimators are
  checked against).

Both answer `evaluate(i, u) -> (log_p, posterior_entropy)`, shapes (B,) float64 in nats;
None at a step where p_t has no density, and a posterior entropy of None where
the posterior is a point mass (sigma_i = 0).
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

from scalespace import ScalespaceError
from scalespace.denoisers.oracle import OracleDenoiser
from scalespace.processes.base import Process


class MarginalDensity(Protocol):
    """What the forward trajectory needs from a data model."""

    #: short name recorded in reports ("oracle", "gaussian")
    kind: str

    def evaluate(self, i: int, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None] | None: ...


def log_standard_normal(u: torch.Tensor) -> torch.Tensor:
    """log N(u; 0, I) per image of a batch (B, C, H, W), float64 (B,)."""
    x = u.detach().to(torch.float64).flatten(1)
    return -0.5 * (x * x).sum(1) - 0.5 * x.shape[1] * math.log(2 * math.pi)


class OracleMarginal:
    """p_t of the empirical distribution of `train` (n, C, H, W), through the oracle pass.

    float64 by default: at the first steps sigma_t is tiny and log p_t is a
    difference of terms of order |u|^2 / sigma_t^2, which float32 would round
    to whole nats.
    """

    kind = "oracle"

    def __init__(self, process: Process, train: torch.Tensor, chunk: int = 4096, dtype: torch.dtype = torch.float64):
        self.process = process
        self.oracle = OracleDenoiser(process, train, chunk=chunk, dtype=dtype)
        self.n = int(train.shape[0])

    def evaluate(self, i: int, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        if self.process.sigma(i) == 0:
            return None
        r = self.oracle.posterior(u, i)
        return r.log_p, r.entropy


class GaussianMarginal:
    """p_t of data N(mean, std^2 I) under a DCT-diagonal process (vp, ve, blurring, heat).

    `mean` is a number or an image (C, H, W); `std` > 0. Per DCT coefficient k,
    p_t has variance v_k = std^2 alpha_k^2 + sigma_t^2 and the posterior
    q(u_0 | u_t) variance std^2 sigma_t^2 / v_k, so every entropy is a sum of
    one-dimensional closed forms.
    """

    kind = "gaussian"

    def __init__(self, process: Process, mean: float | torch.Tensor, std: float):
        if not process.spectral:
            raise ScalespaceError(f"process {process.name!r}: Gaussian marginals need a DCT-diagonal process")
        if not std > 0:
            raise ScalespaceError(f"std: must be > 0, got {std}")
        self.process = process
        self.std = float(std)
        m = torch.as_tensor(mean, dtype=torch.float64).expand(process.shape).clone()
        self.mean_basis = process.to_basis(m[None])[0]

    def _alpha(self, i: int) -> torch.Tensor:
        return self.process.alpha(i).expand(self.process.shape)

    def variances(self, i: int) -> torch.Tensor:
        """Per-coefficient variance of p_t, shape (C, H, W)."""
        return self.std**2 * self._alpha(i) ** 2 + self.process.sigma(i) ** 2

    def entropy(self, i: int) -> float:
        """H(p_t) in nats (closed form)."""
        return float(0.5 * torch.log(2 * math.pi * math.e * self.variances(i)).sum())

    def information_loss(self, i: int) -> float:
        """H(u_0 | u_t) in nats (a differential entropy: it may be negative)."""
        s2 = self.process.sigma(i) ** 2
        if s2 == 0:
            return -math.inf
        post = self.std**2 * s2 / self.variances(i)
        return float(0.5 * torch.log(2 * math.pi * math.e * post).sum())

    def kl_to_standard_normal(self, i: int) -> float:
        """KL(p_t || N(0, I)) in nats (closed form)."""
        v = self.variances(i)
        mu = self._alpha(i) * self.mean_basis
        return float(0.5 * (v + mu**2 - 1 - torch.log(v)).sum())

    def evaluate(self, i: int, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        v = self.variances(i)
        c = self.process.to_basis(u.detach().to(torch.float64))
        r = (c - self._alpha(i) * self.mean_basis) ** 2 / v
        log_p = -0.5 * r.flatten(1).sum(1) - 0.5 * torch.log(2 * math.pi * v).sum()
        h = self.information_loss(i)
        return log_p, (torch.full_like(log_p, h) if math.isfinite(h) else None)


__all__ = ["GaussianMarginal", "MarginalDensity", "OracleMarginal", "log_standard_normal"]
