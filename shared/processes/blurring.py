"""`blurring`: blurring diffusion (Hoogeboom & Salimans 2023).

For t = i / T in [0, 1], per DCT coefficient with eigenvalue lambda:

    alpha_t = a_t d_t(lambda),  d_t = (1 - d_min) exp(-lambda tau_t) + d_min,
    tau_t = sigma_B(t)^2 / 2,  sigma_B(t) = sigma_B,max sin^2(pi t / 2),
    logSNR(t) = -2 ln tan(c1 t + c0),  a_t^2 = sigmoid(logSNR), s_t^2 = sigmoid(-logSNR)

with c0 = atan(e^-5), c1 = atan(e^5) - c0, so a_0 = s_1 = 0.99998 and s_0 = a_1 = 0.00674.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field

from scalespace import ScalespaceError
from scalespace.processes.base import LinearGaussianProcess, ProcessParams, expectations


class BlurringParams(ProcessParams):
    T: int = Field(1000, ge=1, le=100_000)
    sigma_blur_max: float = Field(20.0, ge=0, description="sigma_B,max, in pixels")
    d_min: float = Field(0.001, gt=0, le=1)
    # |logSNR| beyond 1400 would overflow exp(-logSNR / 2) in float64 (and means a signal of 0 or 1 to 300 digits)
    logsnr_min: float = Field(-10.0, ge=-1400, le=1400, description="logSNR at t = 1")
    logsnr_max: float = Field(10.0, ge=-1400, le=1400, description="logSNR at t = 0")


class Blurring(LinearGaussianProcess):
    name = "blurring"
    Params = BlurringParams
    default_objective = "v"
    monotone_in_lambda = True
    steady_state_text = "N(0, I)"
    dc_factor_text = "a_t c"
    step_entropy_text = ("need not be monotone (for 32x32 images with T = 1000 it is not, between t = 0.15 and 0.27); "
                         "reported, not asserted")
    #: DCT-diagonal with Neumann boundaries: commutes with the DCT's symmetries, not with pixel permutations
    expected = expectations("fails", "holds")

    def _setup(self) -> None:
        p = self.params
        if p.logsnr_max <= p.logsnr_min:
            raise ScalespaceError("process 'blurring': process_params.logsnr_max must exceed logsnr_min")
        t = torch.arange(p.T + 1, dtype=torch.float64) / p.T
        c0 = math.atan(math.exp(-p.logsnr_max / 2))
        c1 = math.atan(math.exp(-p.logsnr_min / 2)) - c0
        logsnr = -2 * torch.log(torch.tan(c1 * t + c0))
        self.a = torch.sigmoid(logsnr).sqrt()
        self.s = torch.sigmoid(-logsnr).sqrt()
        self.tau = (p.sigma_blur_max * torch.sin(math.pi * t / 2) ** 2) ** 2 / 2
        self._t = t

    @property
    def T(self) -> int:
        return self.params.T

    def times(self) -> torch.Tensor:
        return self._t

    def dissipation(self, i: int) -> torch.Tensor:
        """d_t(lambda), shape (H, W)."""
        dm = self.params.d_min
        return (1 - dm) * torch.exp(-self.lam() * self.tau[i]) + dm

    def alpha(self, i: int) -> torch.Tensor:
        return self.a[i] * self.dissipation(i)

    def sigma(self, i: int) -> float:
        return float(self.s[i])

    def sigma_all(self) -> torch.Tensor:
        return self.s.clone()

    def alphas(self, idx: torch.Tensor, lam: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        dm = self.params.d_min
        lam = self.lam() if lam is None else lam
        col = (-1,) + (1,) * lam.ndim
        a = self.a[idx].reshape(col) * ((1 - dm) * torch.exp(-lam * self.tau[idx].reshape(col)) + dm)
        return a, torch.log(a)

    def _schedule_hint(self) -> str:
        return "blur faster than the noise allows; lower process_params.sigma_blur_max or raise T"
