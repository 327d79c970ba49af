"""Discrete osmosis (Weickert et al. 2013): d/dt u = Laplace(u) - div(d u), d = grad ln v.

Images are batches (B, C, H, W) of positive values; the guidance v is positive
and broadcasts against u. The drift lives on the staggered grid,

    d_{i+1/2,j} = 2 (v_{i+1,j} - v_{i,j}) / (h (v_{i+1,j} + v_{i,j})),

zero on boundary faces (no flux). The face flux
F_{i+1/2} = (u_{i+1} - u_i) / h^2 - d_{i+1/2} (u_i + u_{i+1}) / (2 h) makes
du_i/dt = F_{i+1/2} - F_{i-1/2}: the sum of u telescopes (mass is kept
exactly) and F vanishes for u proportional to v (the steady state). Because
|d| < 2 / h, every off-diagonal weight is non-negative; the explicit step
keeps all weights non-negative (and so positivity) only for
tau <= 1 / max_i(-A_ii), which is never below h^2 / 8.

`explicit_steps` is the one definition of the explicit loop: the torch
reference of the Triton stencil in shared/kernels/osmosis_stencil.py, which
runs all of an image's steps in one launch. Nothing here picks one: whoever
evolves an image passes the loop to use (`evolve_explicit(..., run=...)`,
default this module's), and the layers above the kernels pass
scalespace.kernels.dispatch.osmosis_explicit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from scalespace import ScalespaceError


@dataclass(frozen=True)
class Drift:
    """Staggered drift of a guidance image: dx (..., H-1, W), dy (..., H, W-1)."""

    dx: torch.Tensor
    dy: torch.Tensor
    h: float

    def diagonal(self) -> torch.Tensor:
        """A_ii for every pixel, shape (..., H, W) (always <= 0)."""
        h = self.h
        dx, dy = self.dx, self.dy
        shape = dx.shape[:-2] + (dx.shape[-2] + 1, dx.shape[-1])
        diag = torch.zeros(shape, dtype=dx.dtype, device=dx.device)
        # face i+1/2 contributes -1/h^2 - d/(2h) to cell i and -1/h^2 + d/(2h) to cell i+1
        diag[..., :-1, :] += -1 / h**2 - dx / (2 * h)
        diag[..., 1:, :] += -1 / h**2 + dx / (2 * h)
        diag[..., :, :-1] += -1 / h**2 - dy / (2 * h)
        diag[..., :, 1:] += -1 / h**2 + dy / (2 * h)
        return diag

    def stable_tau(self) -> torch.Tensor:
        """Largest explicit step with non-negative weights, per leading index (e.g. per sample).

        Shape: dx.shape[:-3] (one bound per image, taken over its channels and pixels).
        """
        m = (-self.diagonal()).flatten(start_dim=-3).amax(dim=-1)
        return 1.0 / m


def drift(v: torch.Tensor, h: float = 1.0) -> Drift:
    """The staggered drift of guidance v (..., C, H, W); v must be positive."""
    if not bool((v > 0).all()):
        raise ScalespaceError("osmosis guidance must be positive everywhere; add an offset to the guidance image")
    dx = 2 * (v[..., 1:, :] - v[..., :-1, :]) / (h * (v[..., 1:, :] + v[..., :-1, :]))
    dy = 2 * (v[..., :, 1:] - v[..., :, :-1]) / (h * (v[..., :, 1:] + v[..., :, :-1]))
    return Drift(dx=dx, dy=dy, h=h)


def apply_operator(u: torch.Tensor, d: Drift) -> torch.Tensor:
    """A u: the discrete osmosis right-hand side, same shape as u."""
    h = d.h
    fx = (u[..., 1:, :] - u[..., :-1, :]) / h**2 - d.dx * (u[..., 1:, :] + u[..., :-1, :]) / (2 * h)
    fy = (u[..., :, 1:] - u[..., :, :-1]) / h**2 - d.dy * (u[..., :, 1:] + u[..., :, :-1]) / (2 * h)
    out = torch.zeros_like(u)
    out[..., :-1, :] += fx
    out[..., 1:, :] -= fx
    out[..., :, :-1] += fy
    out[..., :, 1:] -= fy
    return out


def apply_operator_transpose(y: torch.Tensor, d: Drift) -> torch.Tensor:
    """A^T y: the adjoint of apply_operator (<A u, y> = <u, A^T y>), same shape as y.

    A u scatters each face flux f = G u to its two cells (+f left, -f right);
    the adjoint gathers g = y_left - y_right per face and spreads it back
    through G^T."""
    h = d.h
    gx = y[..., :-1, :] - y[..., 1:, :]
    gy = y[..., :, :-1] - y[..., :, 1:]
    out = torch.zeros_like(y)
    out[..., 1:, :] += (1 / h**2 - d.dx / (2 * h)) * gx
    out[..., :-1, :] += (-1 / h**2 - d.dx / (2 * h)) * gx
    out[..., :, 1:] += (1 / h**2 - d.dy / (2 * h)) * gy
    out[..., :, :-1] += (-1 / h**2 - d.dy / (2 * h)) * gy
    return out


def explicit_steps_transposed(u: torch.Tensor, d: Drift, tau: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """The adjoint of explicit_steps: `steps` steps of (I + tau A^T) per image (the torch loop).

    All steps of one run are equal, so the adjoint of their product is the
    product of the adjoint steps."""
    n_max = int(steps.max()) if steps.numel() else 0
    for k in range(n_max):
        active = (k < steps).reshape(steps.shape + (1, 1, 1))
        u = torch.where(active, u + tau * apply_operator_transpose(u, d), u)
    return u


def explicit_step(u: torch.Tensor, d: Drift, tau: float | torch.Tensor) -> torch.Tensor:
    """u + tau A u. `tau` may be a tensor broadcasting against u (per-sample steps)."""
    return u + tau * apply_operator(u, d)


#: runs, per image (leading index), `steps` explicit steps of size `tau`: (u, drift, tau, steps) -> u,
#: with tau shaped leading + (1, 1, 1) and steps (int64) shaped leading
ExplicitSteps = Callable[[torch.Tensor, Drift, torch.Tensor, torch.Tensor], torch.Tensor]


def explicit_steps(u: torch.Tensor, d: Drift, tau: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """`steps` (leading shape) explicit steps of `tau` (leading + (1, 1, 1)) per image: the torch loop.

    Images with fewer steps than the most stop early (their later steps are
    masked out), so each image's result depends on its own count only.
    """
    n_max = int(steps.max()) if steps.numel() else 0
    if steps.numel() == 1 or bool((steps == n_max).all()):
        for _ in range(n_max):
            u = explicit_step(u, d, tau)
        return u
    for k in range(n_max):
        active = (k < steps).reshape(steps.shape + (1, 1, 1))
        u = torch.where(active, explicit_step(u, d, tau), u)
    return u


def evolve_explicit(
    u: torch.Tensor, d: Drift, t: float, safety: float = 1.0, run: ExplicitSteps = explicit_steps
) -> torch.Tensor:
    """Run explicit osmosis for time t with equal steps no larger than the stable bound.

    Each image (leading index) gets its own step count from its own bound, so a
    sample's result does not depend on the other images in its batch. `run`
    takes the steps (`explicit_steps`, or the dispatch's kernel).
    """
    if t < 0:
        raise ScalespaceError("osmosis time must be >= 0")
    if t == 0:
        return u.clone()
    bound = d.stable_tau() * safety  # (...leading,)
    n = torch.ceil(t / bound).to(torch.int64).clamp_min(1)
    tau = (t / n.to(u.dtype)).reshape(n.shape + (1, 1, 1))
    return run(u, d, tau, n)


def implicit_step(
    u: torch.Tensor, d: Drift, tau: float, rtol: float = 1e-12, max_iter: int = 2000, transpose: bool = False
) -> torch.Tensor:
    """Solve (I - tau A) x = u by BiCGSTAB (A is not symmetric), batched per image.

    `transpose`: solve (I - tau A^T) x = u instead (the adjoint step).

    Unconditionally stable; for large tau it replaces many explicit steps. Each
    image converges to `rtol` relative residual; a solve that does not converge
    raises.
    """
    if tau <= 0:
        raise ScalespaceError("implicit osmosis step needs tau > 0")

    op = apply_operator_transpose if transpose else apply_operator

    def mv(x: torch.Tensor) -> torch.Tensor:
        return x - tau * op(x, d)

    def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * b).flatten(start_dim=-3).sum(-1).reshape(a.shape[:-3] + (1, 1, 1))

    x = u.clone()
    r = u - mv(x)
    r_hat = r.clone()
    rho = alpha = omega = torch.ones_like(dot(r, r))
    v = p = torch.zeros_like(u)
    b_norm = dot(u, u).sqrt().clamp_min(1e-300)
    tiny = 1e-300
    for _ in range(max_iter):
        if bool((dot(r, r).sqrt() <= rtol * b_norm).all()):
            return x
        rho_new = dot(r_hat, r)
        beta = (rho_new / torch.where(rho.abs() < tiny, tiny, rho)) * (alpha / torch.where(omega.abs() < tiny, tiny, omega))
        p = r + beta * (p - omega * v)
        v = mv(p)
        den = dot(r_hat, v)
        alpha = rho_new / torch.where(den.abs() < tiny, tiny, den)
        s = r - alpha * v
        t = mv(s)
        tt = dot(t, t)
        omega = dot(t, s) / torch.where(tt < tiny, tiny, tt)
        x = x + alpha * p + omega * s
        r = s - omega * t
        rho = rho_new
    if bool((dot(r, r).sqrt() <= rtol * b_norm * 10).all()):
        return x
    raise ScalespaceError(f"implicit osmosis step did not converge in {max_iter} iterations; use a smaller tau")


def evolve_implicit(
    u: torch.Tensor, d: Drift, t: float, steps: int = 1, rtol: float = 1e-12, transpose: bool = False
) -> torch.Tensor:
    """Osmosis for time t in `steps` implicit steps of equal size (`transpose`: the adjoint evolution)."""
    for _ in range(steps):
        u = implicit_step(u, d, t / steps, rtol=rtol, transpose=transpose)
    return u


def relative_entropy(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """sum q ln(q / q_v), q = u / sum u, per image (leading dims): non-increasing under osmosis."""
    q = u / u.flatten(-3).sum(-1).reshape(u.shape[:-3] + (1, 1, 1))
    qv = v / v.flatten(-3).sum(-1).reshape(v.shape[:-3] + (1, 1, 1))
    return (q * torch.log(q / qv)).flatten(-3).sum(-1)


def shannon_entropy(u: torch.Tensor) -> torch.Tensor:
    """-sum q ln q, q = u / sum u, per image: non-decreasing under homogeneous diffusion."""
    q = u / u.flatten(-3).sum(-1).reshape(u.shape[:-3] + (1, 1, 1))
    return -(q * torch.log(q)).flatten(-3).sum(-1)


def steady_state(u0: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(mean(u0) / mean(v)) v per image, channel by channel (channels do not mix)."""
    mu = u0.mean(dim=(-2, -1), keepdim=True)
    mv_ = v.mean(dim=(-2, -1), keepdim=True)
    return mu / mv_ * v


__all__ = [
    "Drift",
    "drift",
    "apply_operator",
    "ExplicitSteps",
    "explicit_step",
    "explicit_steps",
    "evolve_explicit",
    "implicit_step",
    "evolve_implicit",
    "relative_entropy",
    "shannon_entropy",
    "steady_state",
]
