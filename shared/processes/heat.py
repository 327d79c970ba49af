"""`heat`: inverse heat dissipation (Rissanen et al. 2023).

alpha_k(lambda) = exp(-lambda tau_k), tau_k = sigma_B,k^2 / 2, sigma_B,k
geometric from 0.5 to sigma_B,max for k = 1..K and tau_0 = 0; constant noise
sigma (0.01). The marginals come from a Markov chain (sigma^2 (1 - exp(-2
lambda dtau)) >= 0), so the common posterior applies. The DC mode is never
damped: the mean colour survives to the end (a data-dependent steady state).
"""

from __future__ import annotations

import torch
from pydantic import Field

from scalespace import ScalespaceError
from scalespace.processes.base import DegradedPrior, Flow, LinearGaussianProcess, ProcessParams, expectations
from scalespace.processes.dct import dct2, idct2


class HeatParams(ProcessParams):
    K: int = Field(100, ge=1, le=100_000, description="number of steps")
    sigma_blur_min: float = Field(0.5, gt=0)
    sigma_blur_max: float = Field(20.0, gt=0, description="sigma_B,max in pixels (20 at 28x28)")
    sigma: float = Field(0.01, gt=0, description="constant noise level")
    delta_factor: float = Field(1.25, gt=0, description="sampling noise delta = factor * sigma")


class Heat(DegradedPrior, LinearGaussianProcess):
    name = "heat"
    Params = HeatParams
    constant_noise = True
    monotone_in_lambda = True
    contracting = True
    keeps_mean = "in expectation"
    steady_state_text = "the data-dependent state: each image's mean colour (plus its noise)"
    dc_factor_text = "c"
    expected = expectations("fails", "holds", F5_mean="holds")

    def _setup(self) -> None:
        p = self.params
        if p.sigma_blur_max < p.sigma_blur_min:
            raise ScalespaceError("process 'heat': process_params.sigma_blur_max must be >= sigma_blur_min")
        if p.K == 1:
            sb = torch.tensor([p.sigma_blur_max], dtype=torch.float64)
        else:
            k = torch.arange(p.K, dtype=torch.float64) / (p.K - 1)
            sb = p.sigma_blur_min * (p.sigma_blur_max / p.sigma_blur_min) ** k
        self.sigma_blur = torch.cat([torch.zeros(1, dtype=torch.float64), sb])
        self.tau = self.sigma_blur**2 / 2

    @property
    def T(self) -> int:
        return self.params.K

    def times(self) -> torch.Tensor:
        return self.tau

    def alpha(self, i: int) -> torch.Tensor:
        return torch.exp(self.log_alpha(i))

    def log_alpha(self, i: int) -> torch.Tensor:
        return -self.lam() * self.tau[i]

    def sigma(self, i: int) -> float:
        return self.params.sigma

    def sigma_all(self) -> torch.Tensor:
        return torch.full((self.T + 1,), self.params.sigma, dtype=torch.float64)

    def alphas(self, idx: torch.Tensor, lam: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        lam = self.lam() if lam is None else lam
        la = -lam * self.tau[idx].reshape((-1,) + (1,) * lam.ndim)
        return torch.exp(la), la

    def heat_semigroup(self, u: torch.Tensor, tau: float) -> torch.Tensor:
        """F(tau) u: homogeneous diffusion for time tau (exact, in the DCT basis)."""
        lam = self.lam().to(u.dtype).to(u.device)
        return idct2(torch.exp(-lam * tau) * dct2(u))

    def semigroup(self) -> Flow:
        return self.heat_semigroup

    def steady_draw(self, u0: torch.Tensor, z: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Each image's mean colour plus its noise (the DC mode is never damped)."""
        return u0.mean(dim=(-2, -1), keepdim=True).expand_as(u0) + self.sigma(self.T) * z
