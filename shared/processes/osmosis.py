"""`osmosis`: an image flows deterministically into (scaled) noise.

The guidance v = exp(gamma z) is a positive noise image drawn from the job's
seed (one shared by the whole job, or one per sample). With the positivity
offset c, u_k = P_k(v) (u_0 + c) - c + sigma z where P_k is discrete osmosis
(shared/processes/osmosis_scheme.py) run through the intervals t_1 < ... < t_k
(t_k geometric up to t_max, t_0 = 0). The steady state is (mean(u_0 + c) /
mean(v)) v - c; the mean grey value is kept exactly. Osmosis is linear but not
diagonal in the DCT basis (a DriftDiffusionProcess: no alpha, transition or
posterior), so its reverse step has the heat sampler's shape:
u_{k-1} = P_{k-1}(u0_hat) + delta z.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from scalespace import ScalespaceError
from scalespace.noise import Stream, normal
from scalespace.processes import osmosis_scheme as scheme
from scalespace.processes.base import DegradedPrior, DriftDiffusionProcess, ProcessParams, expectations


class OsmosisParams(ProcessParams):
    K: int = Field(100, ge=1, le=10_000, description="number of steps")
    t_max: float | None = Field(None, gt=0, description="end time; default 0.7 max(H, W)^2")
    t_min_frac: float = Field(1e-3, gt=0, lt=1, description="first time as a fraction of t_max")
    sigma: float = Field(0.01, gt=0, description="Gaussian noise level of the marginals")
    guidance: Literal["shared", "per_sample"] = "shared"
    guidance_contrast: float = Field(0.5, gt=0, le=5, description="gamma in v = exp(gamma z)")
    guidance_seed: int = Field(0, ge=0, description="seed of the guidance noise (jobs set it from their seed)")
    offset: float = Field(2.0, gt=1, description="positivity offset for images in [-1, 1]")
    scheme: Literal["explicit", "implicit"] = "explicit"
    implicit_steps: int = Field(4, ge=1, description="implicit steps per interval (scheme=implicit)")
    delta_factor: float = Field(1.25, gt=0, description="sampling noise delta = factor * sigma")


class Osmosis(DegradedPrior, DriftDiffusionProcess):
    name = "osmosis"
    Params = OsmosisParams
    seeded_params = ("guidance_seed",)
    constant_noise = True
    keeps_mean = "exactly"
    steady_state_text = "(mean(u_0) / mean(v)) v (plus its noise)"
    #: the guidance v is fixed noise: no spatial symmetry is promised, so F5's maps are reported only
    expected = expectations("report", "report", F5_mean="holds", O1="holds", O2="holds", O3="holds")

    def _setup(self) -> None:
        p = self.params
        _, h, w = self.shape
        self.t_max = p.t_max if p.t_max is not None else 0.7 * max(h, w) ** 2
        if p.K == 1:
            geo = torch.tensor([self.t_max], dtype=torch.float64)
        else:
            k = torch.arange(p.K, dtype=torch.float64) / (p.K - 1)
            geo = self.t_max * p.t_min_frac ** (1 - k)
        self._t = torch.cat([torch.zeros(1, dtype=torch.float64), geo])
        self._shared_drift: scheme.Drift | None = None

    @property
    def T(self) -> int:
        return self.params.K

    def times(self) -> torch.Tensor:
        return self._t

    def sigma(self, i: int) -> float:
        return self.params.sigma

    def _times_hint(self) -> str:
        return "check t_max and t_min_frac"

    @property
    def shared_operator(self) -> bool:
        """One guidance for the whole job: one operator A_i for every image (per-sample guidance: one per image)."""
        return self.params.guidance == "shared"

    # --- guidance ---------------------------------------------------------------------
    def guidance(self, ids: torch.Tensor | None, n: int, dtype: torch.dtype, device) -> torch.Tensor:
        """Guidance images v, shape (n or 1, C, H, W), positive."""
        p = self.params
        if p.guidance == "shared" or ids is None:
            if p.guidance == "per_sample" and ids is None:
                raise ScalespaceError("per-sample osmosis guidance needs the sample indices")
            gid = torch.zeros(1, dtype=torch.int64)
        else:
            gid = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
        z = normal(p.guidance_seed, gid, 0, self.shape, Stream.GUIDANCE).to(torch.float64)
        return torch.exp(p.guidance_contrast * z).to(dtype=dtype, device=device)

    def _drift(self, ids, n, dtype, device) -> scheme.Drift:
        if self.params.guidance == "shared":
            d = self._shared_drift
            if d is None or d.dx.dtype != dtype or d.dx.device != torch.device(device):
                d = scheme.drift(self.guidance(None, 1, dtype, device))
                self._shared_drift = d
            return d
        return scheme.drift(self.guidance(ids, n, dtype, device))

    def _interval(self, x: torch.Tensor, d: scheme.Drift, k: int) -> torch.Tensor:
        dt = float(self._t[k] - self._t[k - 1])
        if self.params.scheme == "explicit":
            return scheme.evolve_explicit(x, d, dt, run=self.explicit_steps)
        return scheme.evolve_implicit(x, d, dt, steps=self.params.implicit_steps)

    def _interval_transposed(self, x: torch.Tensor, d: scheme.Drift, k: int) -> torch.Tensor:
        """The adjoint of _interval (torch; the explicit run's adjoint steps or the adjoint implicit solves)."""
        dt = float(self._t[k] - self._t[k - 1])
        if self.params.scheme == "explicit":
            return scheme.evolve_explicit(x, d, dt, run=scheme.explicit_steps_transposed)
        return scheme.evolve_implicit(x, d, dt, steps=self.params.implicit_steps, transpose=True)

    # --- marginals --------------------------------------------------------------------
    def marginal_mean(self, i: int, u0: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        d = self._drift(ids, u0.shape[0], u0.dtype, u0.device)
        x = u0 + self.params.offset
        for k in range(1, i + 1):
            x = self._interval(x, d, k)
        return x - self.params.offset

    def marginal_means_all(self, u0: torch.Tensor) -> list[torch.Tensor]:
        """[A_0 u0, ..., A_K u0] with shared guidance, computed incrementally."""
        if not self.shared_operator:
            raise ScalespaceError(
                "the oracle needs process_params.guidance='shared' for osmosis (one guidance for all samples)"
            )
        d = self._drift(None, 1, u0.dtype, u0.device)
        x = u0 + self.params.offset
        out = [u0.clone()]
        for k in range(1, self.T + 1):
            x = self._interval(x, d, k)
            out.append(x - self.params.offset)
        return out

    def posterior_mean_at(
        self, t: int, s: int, u_t: torch.Tensor, prev_mean: torch.Tensor, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """E[u_s | u_t, u_0] through prev_mean = A_s u_0, for the Markov chain u_t + c = M (u_s + c) + noise.

        M is the osmosis evolution from t_s to t_t. With every marginal's noise
        sigma I, Cov(u_s, u_t) = sigma^2 M^T and Cov(u_t) = sigma^2 I, so the
        Gaussian conditional mean is prev_mean + M^T (u_t - A_t u_0) with
        A_t u_0 = M (prev_mean + c) - c. For heat (M = a per DCT mode) this is
        a u_t + (1 - a^2) A_s u_0, heat's posterior mean.
        """
        if not 0 <= s < t <= self.T:
            raise ScalespaceError(f"posterior needs 0 <= s < t <= T={self.T}, got s={s}, t={t}")
        d = self._drift(ids, u_t.shape[0], u_t.dtype, u_t.device)
        c = self.params.offset
        x = prev_mean + c
        for k in range(s + 1, t + 1):
            x = self._interval(x, d, k)
        r = u_t - (x - c)
        for k in range(t, s, -1):
            r = self._interval_transposed(r, d, k)
        return prev_mean + r

    def steady_state(self, u0: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        v = self.guidance(ids, u0.shape[0], u0.dtype, u0.device)
        return scheme.steady_state(u0 + self.params.offset, v) - self.params.offset

    # --- theory facts -----------------------------------------------------------------
    def steady_draw(self, u0: torch.Tensor, z: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """(mean(u_0 + c) / mean(v)) v - c plus the noise."""
        return self.steady_state(u0, ids) + self.sigma(self.T) * z

    def network_channels(self) -> tuple[int, int]:
        """[u, w, ln g] in, two residual parts out (scalespace.denoisers.objectives.OneStepObjective)."""
        c = self.shape[0]
        return 3 * c, 2 * c

    def network_condition(self) -> torch.Tensor:
        """g = v / mean(v) for the shared guidance v, (1, C, H, W) float64."""
        v = self.guidance(None, 1, torch.float64, "cpu")
        return v / v.mean()
