"""`vp`: variance preserving (DDPM) forward process.

alpha_i = sqrt(abar_i) for every DCT coefficient, sigma_i^2 = 1 - abar_i,
abar_i = prod_{j<=i} (1 - beta_j), abar_0 = 1. Linear betas 1e-4 .. 0.02 over
T = 1000 (abar_1000 ~ 4.04e-5) or the cosine schedule of Nichol & Dhariwal.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from scalespace import ScalespaceError
from scalespace.processes.base import LinearGaussianProcess, ProcessParams, expectations


class VPParams(ProcessParams):
    schedule: Literal["linear", "cosine", "custom"] = "linear"
    T: int = Field(1000, ge=1, le=100_000, description="number of steps")
    beta_start: float = Field(1e-4, description="first beta of the linear schedule")
    beta_end: float = Field(0.02, description="last beta of the linear schedule")
    cosine_s: float = Field(0.008, ge=0, description="offset s of the cosine schedule")
    betas: list[float] | None = Field(None, description="schedule=custom: beta_1..beta_T (T is taken from it)")


def betas_linear(T: int, start: float, end: float) -> torch.Tensor:
    return torch.linspace(start, end, T, dtype=torch.float64)


def betas_cosine(T: int, s: float) -> torch.Tensor:
    i = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((i / T + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)


class VP(LinearGaussianProcess):
    name = "vp"
    Params = VPParams
    isotropic = True
    default_objective = "eps"
    grey_density_is_osmosis = True
    steady_state_text = "N(0, I)"
    dc_factor_text = "sqrt(abar_t) c"
    step_entropy_text = "monotone for DDPM"
    #: N(0, I) is the stationary law of the vp chain, so KL(p_t || N(0, I)) cannot grow (F3 c)
    expected = expectations("holds", "holds", F3c="holds", R3="holds")

    def _setup(self) -> None:
        p = self.params
        if p.schedule == "linear":
            betas = betas_linear(p.T, p.beta_start, p.beta_end)
        elif p.schedule == "cosine":
            betas = betas_cosine(p.T, p.cosine_s)
        else:
            if not p.betas:
                raise ScalespaceError("process 'vp': schedule 'custom' needs process_params.betas (a list)")
            betas = torch.tensor(p.betas, dtype=torch.float64)
        if not bool((betas < 1).all()):
            raise ScalespaceError(
                "process 'vp': every beta must be below 1; check process_params.beta_start, beta_end or betas"
            )
        self.betas = betas
        self.abar = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])

    @property
    def T(self) -> int:
        return len(self.betas)

    def times(self) -> torch.Tensor:
        return torch.arange(self.T + 1, dtype=torch.float64)

    def alpha(self, i: int) -> torch.Tensor:
        return self.abar[i].sqrt()

    def sigma(self, i: int) -> float:
        return float((1 - self.abar[i]).clamp_min(0).sqrt())

    def sigma_all(self) -> torch.Tensor:
        return (1 - self.abar).clamp_min(0).sqrt()

    def alphas(self, idx: torch.Tensor, lam: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.abar[idx].sqrt()
        return a, torch.log(a)

    def _schedule_hint(self) -> str:
        return "abar must decrease (every beta in (0, 1)); check process_params.betas, beta_start and beta_end"
