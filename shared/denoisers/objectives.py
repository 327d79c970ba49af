"""What a network predicts for each process, and how its output becomes a prediction.

Three objectives, all with the network's input and output in pixel space:

- `eps` (vp): the network predicts the noise eps of
  u_t = A_t u_0 + sigma_t eps; u0_hat = A_t^{-1} (u_t - sigma_t eps_hat).
- `v` (ve, blurring): noise prediction in a stable parametrisation, per DCT
  mode. With r = sqrt(alpha^2 + sigma^2), abar = alpha / r and sbar = sigma / r
  the network sees x = u_t / r (unit scale per mode) and predicts
  v = abar eps - sbar u_0, so that

      eps_hat = sbar x + abar v_hat,   u0_hat = abar x - sbar v_hat.

  Both gains are at most 1, so an error in v_hat never grows when it becomes
  u0_hat or eps_hat. With plain eps-prediction, u0_hat = A_t^{-1}(...)
  multiplies the error by sigma_t / alpha_t, up to 1e5 for the high
  frequencies of blurring at t near 1, and the sampler's clipping of u0_hat
  to [-1, 1] then destroys the step; for ve the gain sigma_t reaches 7-50.
  For vp (alpha^2 + sigma^2 = 1) this is the v of Salimans & Ho (2022); for ve
  it is the preconditioning of Karras et al. (2022) with sigma_data = 1. The
  loss is the mean squared error in v, i.e. the eps loss weighted by 1 / abar^2.
- `one_step` (heat, osmosis; Rissanen et al. 2023): the network predicts the
  previous state's mean, u_{k-1} = A_{k-1} u_0, from u_k, as a residual:
  u_{k-1}_hat = u_k + net(u_k, k).

Each objective maps a batch of training images to (network input, time,
target) and a network output back to a prediction; the learned denoiser and
the trainer share these functions, so training and sampling cannot disagree.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch

from scalespace import ScalespaceError
from scalespace.processes.base import LinearGaussianProcess, Process

Objective = Literal["eps", "v", "one_step"]
OBJECTIVES: tuple[str, ...] = ("eps", "v", "one_step")


def objective_for(process: Process, objective: str | None) -> str:
    """The objective to train `process` with (None or 'auto': the process's default); refuses a mismatch."""
    name = process.default_objective if objective in (None, "auto") else objective
    if name not in OBJECTIVES:
        raise ScalespaceError(f"objective: unknown {name!r}; choose one of auto, {', '.join(OBJECTIVES)}")
    if name == "one_step" and not process.prior_needs_data:
        raise ScalespaceError(f"objective: 'one_step' is for heat and osmosis, not {process.name!r}; use eps or v")
    if name != "one_step" and not process.spectral:
        raise ScalespaceError(f"objective: {name!r} needs a DCT-diagonal process; use 'one_step' for {process.name!r}")
    if name != "one_step" and process.prior_needs_data:
        raise ScalespaceError(f"objective: {process.name!r} is trained with 'one_step' (its prior is degraded data)")
    return name


class Coefficients:
    """alpha_i and sigma_i of every index as float32 tables on one device.

    alpha has shape (T + 1, 1, 1, 1) for isotropic processes and (T + 1, 1, H, W)
    (per DCT mode) otherwise; sigma has shape (T + 1, 1, 1, 1).
    """

    def __init__(self, process: Process, device: torch.device | str = "cpu"):
        if not isinstance(process, LinearGaussianProcess):
            raise ScalespaceError(f"process {process.name!r} has no per-mode coefficients")
        alphas = torch.stack([process.alpha(i).reshape(1, *process.alpha(i).shape) for i in range(process.T + 1)])
        if process.isotropic:
            alphas = alphas.reshape(-1, 1, 1, 1)
        else:
            alphas = alphas.reshape(process.T + 1, 1, *process.shape[1:])
        sigmas = torch.tensor([process.sigma(i) for i in range(process.T + 1)], dtype=torch.float64)
        sigmas = sigmas.reshape(-1, 1, 1, 1)
        r = torch.sqrt(alphas**2 + sigmas**2)
        self.alpha = alphas.float().to(device)
        self.sigma = sigmas.float().to(device)
        self.r = r.float().to(device)


def guidance_condition(process: Process, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """The process's condition image for the network (osmosis: g = v / mean(v), (1, C, H, W)) as float32; or None."""
    g = process.network_condition()
    return None if g is None else g.float().to(device)


def time_input(process: Process, i: torch.Tensor) -> torch.Tensor:
    """The network's time input, i / T in [0, 1], float32 (B,)."""
    return i.float() / process.T


class SpectralObjective:
    """eps- or v-prediction for vp, ve and blurring (see the module docstring)."""

    def __init__(self, process: LinearGaussianProcess, objective: str, device: torch.device | str = "cpu"):
        self.process = process
        self.objective = objective
        self.coef = Coefficients(process, device)

    def _at(self, i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c = self.coef
        return c.alpha[i], c.sigma[i], c.r[i]

    def net_input(self, u_t: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """x = u_t / r per mode (unit scale), in pixel space."""
        _, _, r = self._at(i)
        p = self.process
        return p.from_basis(p.to_basis(u_t) / r.to(u_t.dtype))

    def training_pair(self, u0: torch.Tensor, i: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(network input, target) for clean images u0 (B, C, H, W), indices i (B,) and noise eps like u0."""
        a, s, r = self._at(i)
        p = self.process
        u0_b, eps_b = p.to_basis(u0), p.to_basis(eps)
        x = p.from_basis((a * u0_b + s * eps_b) / r)
        if self.objective == "eps":
            return x, eps
        return x, p.from_basis((a * eps_b - s * u0_b) / r)

    def head(self, out: torch.Tensor) -> torch.Tensor:
        return out

    def predict_u0(self, out: torch.Tensor, u_t: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """u0_hat from the network output `out` at u_t (both (B, C, H, W))."""
        a, s, r = (c.to(u_t.dtype) for c in self._at(i))
        p = self.process
        ub, ob = p.to_basis(u_t), p.to_basis(out)
        if self.objective == "eps":
            return p.from_basis((ub - s * ob) / a)
        return p.from_basis(a * ub / r**2 - s / r * ob)


class OneStepObjective:
    """Predict u_{k-1} = A_{k-1} u_0 from u_k (heat, osmosis) as a scaled residual on u_k.

    u_{k-1}_hat = u_k + scale_k head(net(input(u_k), k)), where scale_k (K + 1,)
    is the RMS of the residual A_{k-1} u_0 - u_k over the training set: the
    network's output is O(1) at every k, so the loss weighs each step's
    relative error alike instead of being dominated by the few steps that
    change the image most. Most steps change the image by about sigma, so the
    network mostly has to tell the noise from the clean state.

    For heat, input and head are the identity. Osmosis drives u + c towards a
    multiple of the guidance v, a fixed noise texture that convolutions cannot
    tell from the noise; but w = (u + c) / g - c with g = v / mean(v) obeys a
    (weighted) diffusion, d/dt (g w) = div(g grad w), and ends in the flat
    image of the mean grey value, as heat does. So the network sees
    [u, w, ln g] and outputs two parts (r_u, r_w) whose sum in pixel space is
    r_u + g r_w: early steps are smooth in u, late ones in w, and the network
    uses whichever is simple. The head is linear, so the loss stays a plain MSE.
    """

    def __init__(self, process: Process, scale: torch.Tensor | None = None, device: torch.device | str = "cpu"):
        self.process = process
        self.sigma = process.sigma(1)
        scale = torch.ones(process.T + 1) if scale is None else scale
        if scale.shape != (process.T + 1,) or not bool((scale > 0).all()):
            raise ScalespaceError(f"one-step scale must be positive with shape ({process.T + 1},)")
        self.scale = scale.float().to(device)
        self.g = guidance_condition(process, device)
        self.offset = float(getattr(process.params, "offset", 0.0))

    def net_input(self, u_t: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        if self.g is None:
            return u_t
        g = self.g.to(u_t.dtype).expand(u_t.shape[0], -1, -1, -1)
        w = (u_t + self.offset) / g - self.offset
        return torch.cat([u_t, w, torch.log(g)], dim=1)

    def head(self, out: torch.Tensor) -> torch.Tensor:
        """The network output as a (scaled) pixel-space residual, (B, C, H, W)."""
        if self.g is None:
            return out
        c = out.shape[1] // 2
        return out[:, :c] + self.g.to(out.dtype) * out[:, c:]

    def training_pair(
        self, mean_k: torch.Tensor, mean_prev: torch.Tensor, eps: torch.Tensor, i: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(network input from u_k = A_k u0 + sigma eps, target (A_{k-1} u0 - u_k) / scale_k for head(out))."""
        u_k = mean_k + self.sigma * eps
        return self.net_input(u_k, i), (mean_prev - u_k) / self.scale[i].reshape(-1, 1, 1, 1)

    def predict_prev(self, out: torch.Tensor, u_t: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return u_t + self.scale[i].reshape(-1, 1, 1, 1).to(out.dtype) * self.head(out)


def one_step_scale(
    process: Process,
    means: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    idx: torch.Tensor,
) -> torch.Tensor:
    """scale_k = sqrt(mean |A_{k-1} u0 - A_k u0|^2 per value + sigma^2), k = 1..K, over images idx (scale_0 = 1).

    means(idx, k, j) gives (A_k u0[idx], A_j u0[idx]) per sample (training.ForwardMeans.pair).
    """
    out = torch.ones(process.T + 1, dtype=torch.float64)
    for k in range(1, process.T + 1):
        kk = torch.full_like(idx, k)
        m_k, m_prev = means(idx, kk, kk - 1)
        d = (m_prev - m_k).double()
        out[k] = math.sqrt(float((d**2).mean()) + process.sigma(k) ** 2)
    return out.float()
