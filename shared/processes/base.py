"""One interface for every forward process (SPEC section 1).

A process has a discrete time grid i = 0..T and a closed-form marginal

    p(u_i | u_0) = N(A_i u_0 + b_i, sigma_i^2 I),

with A_i = V diag(alpha_i) V^T diagonal in the DCT basis V (or a scalar, for
the isotropic processes vp and ve; or a general operator, for osmosis). All
schedule coefficients are float64; samplers cast them to their working dtype.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict

from scalespace import ScalespaceError
from scalespace.processes.dct import dct2, idct2, laplacian_eigenvalues


class ProcessParams(BaseModel):
    """Base of every process's parameters; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Posterior:
    """Coefficients of q(u_s | u_t, u_0_hat), per DCT coefficient (or scalars).

    mean = coef_ut * u_t + coef_u0 * u0_hat and variance `var`, all in the
    process's basis (pixels for isotropic processes, DCT otherwise).
    """

    coef_ut: torch.Tensor
    coef_u0: torch.Tensor
    var: torch.Tensor


class Process(ABC):
    """A forward process on images of shape (C, H, W)."""

    name: ClassVar[str]
    Params: ClassVar[type[ProcessParams]]
    #: True when A_i is a multiple of the identity (no transform needed).
    isotropic: ClassVar[bool] = False
    #: True when the prior needs data (heat, osmosis start from degraded data).
    prior_needs_data: ClassVar[bool] = False
    #: True when A_i is diagonal in the DCT basis (alpha gives it whole).
    spectral: ClassVar[bool] = True
    #: The sampler a job uses when it names none (scalespace.sampling.samplers.SAMPLERS).
    default_sampler: ClassVar[str] = "ancestral"

    def __init__(self, shape: tuple[int, int, int], params: ProcessParams | dict[str, Any] | None = None):
        if len(shape) != 3 or min(shape) < 1:
            raise ScalespaceError(f"image shape must be (C, H, W) with positive sizes, got {shape}")
        self.shape = tuple(int(s) for s in shape)
        if params is None:
            params = {}
        self.params = params if isinstance(params, self.Params) else self.Params(**dict(params))
        self._setup()
        self.validate()

    # --- what each process defines -------------------------------------------------
    @abstractmethod
    def _setup(self) -> None:
        """Build the schedule from self.params and self.shape."""

    @property
    @abstractmethod
    def T(self) -> int:
        """Number of steps; the grid is i = 0..T."""

    @abstractmethod
    def times(self) -> torch.Tensor:
        """The time of each index, float64, shape (T + 1,)."""

    @abstractmethod
    def alpha(self, i: int) -> torch.Tensor:
        """alpha_i per DCT coefficient, float64: shape () if isotropic else (H, W)."""

    @abstractmethod
    def sigma(self, i: int) -> float:
        """Marginal noise standard deviation sigma_i."""

    def log_alpha(self, i: int) -> torch.Tensor:
        """ln alpha_i; processes whose alpha underflows (heat) give it in closed form."""
        return torch.log(self.alpha(i))

    # --- shared closed forms -----------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "T": self.T, "params": self.params.model_dump()}

    def to_basis(self, u: torch.Tensor) -> torch.Tensor:
        return u if self.isotropic else dct2(u)

    def from_basis(self, c: torch.Tensor) -> torch.Tensor:
        return c if self.isotropic else idct2(c)

    def lam(self) -> torch.Tensor:
        return laplacian_eigenvalues(self.shape[1], self.shape[2])

    def transition(self, s: int, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha_{t|s} and sigma_{t|s}^2 of p(u_t | u_s), s < t (float64)."""
        a = torch.exp(self.log_alpha(t) - self.log_alpha(s))
        s2 = self.sigma(t) ** 2 - a**2 * self.sigma(s) ** 2
        return a, s2

    def posterior(self, t: int, s: int) -> Posterior:
        """q(u_s | u_t, u_0) for s < t, SPEC section 1, in a stable algebraic form.

        var = ss2 sts2 / (sts2 + a^2 ss2), coef_ut = a ss2 / (...), coef_u0 =
        alpha_s sts2 / (...): the same as the SPEC formula, and well defined when
        sigma_s = 0 (returns A_s u0_hat) or sigma_{t|s} = 0 (u_s = u_t / a).
        """
        if not 0 <= s < t <= self.T:
            raise ScalespaceError(f"posterior needs 0 <= s < t <= T={self.T}, got s={s}, t={t}")
        a, sts2 = self.transition(s, t)
        sts2 = sts2.clamp_min(0.0)
        ss2 = torch.as_tensor(self.sigma(s) ** 2, dtype=torch.float64)
        alpha_s = self.alpha(s)
        den = sts2 + a**2 * ss2
        coef_ut = a * ss2 / den
        coef_u0 = alpha_s * sts2 / den
        var = ss2 * sts2 / den
        return Posterior(coef_ut=coef_ut, coef_u0=coef_u0, var=var)

    def marginal_mean(self, i: int, u0: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """E[u_i | u_0] for a batch u0 of shape (B, C, H, W)."""
        a = self.alpha(i).to(u0.dtype).to(u0.device)
        if self.isotropic:
            return a * u0
        return idct2(a * dct2(u0))

    def sample_marginal(
        self, i: int, u0: torch.Tensor, z: torch.Tensor, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """u_i = A_i u0 + sigma_i z, with z standard normal like u0.

        `ids` (sample indices) matter only to processes with per-sample state (osmosis guidance).
        """
        return self.marginal_mean(i, u0, ids) + self.sigma(i) * z

    def reverse_mean(
        self, t: int, s: int, u_t: torch.Tensor, u0_hat: torch.Tensor, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean of the reverse step t -> s given a prediction of u_0 (the posterior mean)."""
        post = self.posterior(t, s)
        dt, dev = u_t.dtype, u_t.device
        m = post.coef_ut.to(dev, dt) * self.to_basis(u_t) + post.coef_u0.to(dev, dt) * self.to_basis(u0_hat)
        return self.from_basis(m)

    def sample_prior(
        self, z: torch.Tensor, data: torch.Tensor | None = None, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """A draw from the sampler's start distribution at i = T.

        Processes whose end state forgets the data start from sigma_T z; heat
        and osmosis start from degraded data plus noise (`data` is required).
        """
        if self.prior_needs_data:
            if data is None:
                raise ScalespaceError(f"process {self.name!r} starts from degraded data: pass data")
            return self.sample_marginal(self.T, data, z, ids)
        return self.sigma(self.T) * z

    def conditional_entropy(self, i: int) -> float:
        """H(u_i | u_0) = N/2 ln(2 pi e sigma_i^2) (SPEC F3 a); -inf when sigma_i = 0."""
        n = math.prod(self.shape)
        s = self.sigma(i)
        return -math.inf if s == 0 else 0.5 * n * math.log(2 * math.pi * math.e * s * s)

    # --- validation ------------------------------------------------------------------
    def validate(self) -> None:
        """Refuse a schedule with non-finite values or a negative sigma_{t|s}^2."""
        for i in range(self.T + 1):
            a, s = self.alpha(i), self.sigma(i)
            if not torch.isfinite(a).all() or not math.isfinite(s) or s < 0:
                raise ScalespaceError(
                    f"process {self.name!r}: schedule is not finite at step {i}; check process_params"
                )
            if not torch.isfinite(self.log_alpha(i)).all():
                raise ScalespaceError(
                    f"process {self.name!r}: alpha is 0 at step {i}, transitions would divide by it; "
                    "check process_params"
                )
        t = self.times()
        if not bool((t[1:] > t[:-1]).all()):
            raise ScalespaceError(f"process {self.name!r}: time grid must increase; check process_params")
        for i in range(1, self.T + 1):
            _, s2 = self.transition(i - 1, i)
            scale = max(self.sigma(i) ** 2, 1e-300)
            if bool((s2 < -1e-10 * scale).any()):
                raise ScalespaceError(
                    f"process {self.name!r}: sigma_{{t|s}}^2 < 0 between steps {i - 1} and {i} "
                    f"(min {float(s2.min()):.3g}); {self._schedule_hint()}"
                )

    def _schedule_hint(self) -> str:
        return "the schedule has no Markov chain; change process_params"
