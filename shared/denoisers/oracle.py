"""The exact ("oracle") denoiser over a finite training set.

For training images f_j and a linear-Gaussian process,

    w_j(u_t) = softmax_j(-|u_t - A_t f_j|^2 / (2 sigma_t^2)),  E[u_0 | u_t] = sum_j w_j f_j.

In the DCT basis A_t is diagonal, so with U = V^T u_t and F_j = V^T f_j the
score is ((alpha U) . F_j - |alpha F_j|^2 / 2) / sigma^2 up to a per-row
constant: a matrix product and a streaming log-sum-exp, the shape of
attention. The reduction streams over the training set in chunks with a
running max, so memory is O(B x D + chunk x D + B x chunk), never B x n
(chunk: 16,384 training images on a CPU by default, 4,096 elsewhere; a
sample or evaluate job sets it with `oracle_chunk`). Scores come from
float32 (or the input dtype) matrix products; the running sums, log p_t and
the posterior entropy accumulate in float64. The reduction is
scalespace.kernels.oracle_reduction (the Triton kernel beside its torch
reference); the dispatch picks one. Osmosis (not diagonal in any fixed basis)
uses precomputed A_k f_j in pixel space with the same reduction.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch

from scalespace import ScalespaceError
from scalespace.denoisers.base import Denoiser
from scalespace.kernels import dispatch
from scalespace.processes.base import DriftDiffusionProcess, LinearGaussianProcess, Process


@dataclass
class OracleResult:
    """mean (B, C, H, W) in the input dtype; log_p and entropy (B,) float64, in nats."""

    mean: torch.Tensor
    log_p: torch.Tensor
    entropy: torch.Tensor


class OracleDenoiser(Denoiser):
    """Exact posterior mean over `train` (n, C, H, W) for `process`."""

    name = "oracle"

    def __init__(
        self, process: Process, train: torch.Tensor, chunk: int | None = None, dtype: torch.dtype = torch.float32
    ):
        if train.ndim != 4 or tuple(train.shape[1:]) != tuple(process.shape):
            raise ScalespaceError(
                f"oracle training set must have shape (n, {', '.join(map(str, process.shape))}), got {tuple(train.shape)}"
            )
        if train.shape[0] < 1:
            raise ScalespaceError("oracle needs at least one training image")
        if chunk is None:  # 16,384 on a CPU, 4,096 elsewhere (dispatch.oracle_default_chunk)
            chunk = dispatch.oracle_default_chunk(train.device)
        if chunk < 1:
            raise ScalespaceError("oracle chunk must be >= 1")
        self.process = process
        self.chunk = int(chunk)
        self.dtype = dtype
        self.n = train.shape[0]
        self.d = math.prod(process.shape)
        self.values = train.to(dtype).reshape(self.n, self.d)
        self._digest = hashlib.sha256(train.to(torch.float32).cpu().contiguous().numpy().tobytes()).hexdigest()
        self._means: list[torch.Tensor] | None = None
        if isinstance(process, LinearGaussianProcess):
            self.keys_basis = process.to_basis(train.to(dtype)).reshape(self.n, self.d)
            self.keys_sq_basis = self.keys_basis**2
        else:
            assert isinstance(process, DriftDiffusionProcess)
            means = process.marginal_means_all(train.to(torch.float64))
            self._means = [m.to(dtype).reshape(self.n, self.d) for m in means]

    def digest(self) -> str:
        return self._digest

    def _alpha_flat(self, process: LinearGaussianProcess, i: int) -> torch.Tensor:
        a = process.alpha(i)
        c = process.shape[0]
        a = a.to(self.values.device)  # schedules live on the CPU; the training set may not
        return (a.expand(c, *process.shape[1:]) if a.ndim == 2 else a.expand(process.shape)).reshape(self.d)

    def posterior(self, u_t: torch.Tensor, i: int) -> OracleResult:
        """The exact posterior at index i for a batch u_t (B, C, H, W)."""
        p = self.process
        sigma = p.sigma(i)
        b = u_t.shape[0]
        if sigma == 0:
            raise ScalespaceError(f"the oracle posterior is a point mass at step {i} (sigma = 0)")
        inv_var = 1.0 / sigma**2
        x = u_t.to(self.dtype)
        if isinstance(p, LinearGaussianProcess):
            alpha = self._alpha_flat(p, i)
            u_basis = p.to_basis(x).reshape(b, self.d)
            query = (alpha.to(self.dtype) * u_basis)
            key_sq = self.keys_sq_basis @ (alpha**2).to(self.dtype)
            keys = self.keys_basis
            u_sq = (u_basis.to(torch.float64) ** 2).sum(1)
        else:
            assert self._means is not None
            keys = self._means[i]
            key_sq = (keys.to(torch.float64) ** 2).sum(1).to(self.dtype)
            query = x.reshape(b, self.d)
            u_sq = (query.to(torch.float64) ** 2).sum(1)
        mean, lse, entropy = dispatch.oracle_reduction(query, keys, key_sq, self.values, inv_var, self.chunk)
        log_p = lse - 0.5 * u_sq * inv_var - math.log(self.n) - 0.5 * self.d * math.log(2 * math.pi * sigma**2)
        return OracleResult(mean=mean.to(u_t.dtype).reshape(u_t.shape), log_p=log_p, entropy=entropy)

    def predict_u0(self, u_t: torch.Tensor, i: int, ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.posterior(u_t, i).mean
