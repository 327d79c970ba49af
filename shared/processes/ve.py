"""`ve`: variance exploding (SMLD / score SDE) forward process.

alpha_i = 1, sigma_0 = 0 and sigma_1..sigma_T geometric from sigma_min to
sigma_max. sigma_max defaults to 50 at 32x32x3 and scales with the data's
diameter, 50 sqrt(N / 3072) for N values per image.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field

from scalespace import ScalespaceError
from scalespace.processes.base import LinearGaussianProcess, ProcessParams, expectations


class VEParams(ProcessParams):
    T: int = Field(1000, ge=1, le=100_000)
    sigma_min: float = Field(0.01, gt=0)
    sigma_max: float | None = Field(None, gt=0, description="default 50 sqrt(N / 3072)")
    sigmas: list[float] | None = Field(None, description="sigma_1..sigma_T given explicitly (T taken from it)")


class VE(LinearGaussianProcess):
    name = "ve"
    Params = VEParams
    isotropic = True
    default_objective = "v"
    steady_state_text = "none; u_T / sigma_T is compared with N(0, I)"
    dc_factor_text = "c"
    expected = expectations("holds", "holds")

    def _setup(self) -> None:
        p = self.params
        n = math.prod(self.shape)
        self.sigma_max = p.sigma_max if p.sigma_max is not None else 50.0 * math.sqrt(n / 3072.0)
        if p.sigmas:
            self.sigmas = torch.cat([torch.zeros(1, dtype=torch.float64), torch.tensor(p.sigmas, dtype=torch.float64)])
            self.sigma_max = float(self.sigmas[-1])
            return
        if self.sigma_max <= p.sigma_min:
            raise ScalespaceError(
                f"process 've': process_params.sigma_max ({self.sigma_max:g}) must exceed sigma_min ({p.sigma_min:g})"
            )
        if p.T == 1:
            geo = torch.tensor([self.sigma_max], dtype=torch.float64)
        else:
            geo = p.sigma_min * (self.sigma_max / p.sigma_min) ** (torch.arange(p.T, dtype=torch.float64) / (p.T - 1))
        self.sigmas = torch.cat([torch.zeros(1, dtype=torch.float64), geo])

    @property
    def T(self) -> int:
        return len(self.sigmas) - 1

    def _schedule_hint(self) -> str:
        return "sigma must increase; check process_params.sigmas, sigma_min and sigma_max"

    def times(self) -> torch.Tensor:
        return torch.arange(self.T + 1, dtype=torch.float64)

    def alpha(self, i: int) -> torch.Tensor:
        return torch.ones((), dtype=torch.float64)

    def sigma(self, i: int) -> float:
        return float(self.sigmas[i])

    def sigma_all(self) -> torch.Tensor:
        return self.sigmas.clone()

    def alphas(self, idx: torch.Tensor, lam: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.ones(len(idx), dtype=torch.float64)
        return a, torch.log(a)

    def steady_scale(self, i: int) -> float | None:
        """ve has no steady state; u_t / sigma_t tends to N(0, I): 1 / sigma_t (None at sigma_t = 0)."""
        s = self.sigma(i)
        return 1.0 / s if s > 0 else None
