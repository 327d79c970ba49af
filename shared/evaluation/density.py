"""Osmosis and vp side by side on a 1-D grey-value grid.

The Fokker-Planck equation of the VP SDE, dx = -beta/2 x dt + sqrt(beta) dW,
is on the time theta = -1/2 ln abar

    d/dtheta p = p'' + (x p)' = p'' - (d p)',   d = (ln v)' = -x,  v = N(0, 1) density:

osmosis of the density with the standard normal density as guidance. Every
pixel of a vp image moves by that law independently, so the grey-value
density pooled over pixels and images evolves by it too. Its exact solution
at step i is the data's grey values y scaled and blurred,
p_i(x) = E_y N(x; sqrt(abar_i) y, 1 - abar_i).

The osmosis side uses the discretisation of shared/processes/osmosis_scheme.py
(staggered drift, no-flux boundaries) on a cell-centred grid shaped
(1, 1, 1, G). Its operator is A = L V^-1 with L symmetric (the flux between
two cells is k (u_{i+1}/v_{i+1} - u_i/v_i)), so S = V^-1/2 A V^1/2 is
symmetric (and tridiagonal) and exp(theta A) = V^1/2 Q exp(theta Lambda) Q^T V^-1/2 integrates it
exactly in time: what is left is the O(h^2) error of the space grid (about
1e-4 in L1 for h = 0.01). The explicit scheme is offered too, as a cross-check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from scalespace import ScalespaceError
from scalespace.kernels import dispatch
from scalespace.processes import osmosis_scheme as scheme
from scalespace.processes.base import Process


@dataclass(frozen=True)
class Grid:
    """Cell-centred grid of G cells of width h on [-L, L]."""

    L: float
    G: int

    @property
    def h(self) -> float:
        return 2 * self.L / self.G

    @property
    def x(self) -> torch.Tensor:
        return -self.L + (torch.arange(self.G, dtype=torch.float64) + 0.5) * self.h


def grey_values(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct grey values of a data set and their frequencies (pooled over pixels and images)."""
    vals, counts = torch.unique(images.detach().to(torch.float64).reshape(-1), return_counts=True)
    return vals, counts.to(torch.float64) / counts.sum()


def vp_density(values: torch.Tensor, weights: torch.Tensor, abar: float, grid: Grid) -> torch.Tensor:
    """Exact pooled grey-value density of vp at abar: sum_y w_y N(x; sqrt(abar) y, 1 - abar), on the grid."""
    s2 = 1.0 - abar
    if s2 <= 0:
        raise ScalespaceError("vp density: abar must be below 1 (the data's density is a sum of point masses)")
    x = grid.x
    g = torch.exp(-((x[None, :] - math.sqrt(abar) * values[:, None]) ** 2) / (2 * s2)) / math.sqrt(2 * math.pi * s2)
    return (weights[:, None] * g).sum(0)


class OsmosisPropagator:
    """exp(theta A) for the 1-D osmosis operator with standard normal guidance, via one symmetric eigensolve."""

    def __init__(self, grid: Grid):
        self.grid = grid
        x = grid.x
        self.v = torch.exp(-x**2 / 2) / math.sqrt(2 * math.pi)
        self.drift = scheme.drift(self.v.reshape(1, 1, 1, grid.G), h=grid.h)
        # columns of A: the scheme's operator applied to each unit vector, in one batched call
        eye = torch.eye(grid.G, dtype=torch.float64).reshape(grid.G, 1, 1, grid.G)
        a = scheme.apply_operator(eye, self.drift).reshape(grid.G, grid.G).T
        r = self.v.sqrt()
        s = a * r[None, :] / r[:, None]
        asym = float((s - s.T).abs().max() / s.abs().max())
        if asym > 1e-10:
            raise ScalespaceError(f"osmosis operator is not symmetrisable (asymmetry {asym:.2g}); check the drift")
        # a 3-point stencil: S is tridiagonal, and a tridiagonal eigensolver is far cheaper than a dense one
        from scipy.linalg import eigh_tridiagonal

        lam, q = eigh_tridiagonal(s.diagonal().numpy(), ((s.diagonal(1) + s.diagonal(-1)) / 2).numpy())
        self.lam, self.q = torch.from_numpy(lam), torch.from_numpy(q)
        self.r = r

    def __call__(self, u: torch.Tensor, theta: float) -> torch.Tensor:
        """exp(theta A) u for densities u (G,) on the grid."""
        w = self.q.T @ (u / self.r)
        return self.r * (self.q @ (torch.exp(theta * self.lam.clamp(max=0.0)) * w))

    def explicit(self, u: torch.Tensor, theta: float) -> torch.Tensor:
        """The same with the explicit scheme (time steps below the stability bound)."""
        return scheme.evolve_explicit(u.reshape(1, 1, 1, -1), self.drift, theta, run=dispatch.osmosis_explicit).reshape(-1)


def bin_masses(grid: Grid, density: torch.Tensor, lo: float, hi: float, bins: int) -> torch.Tensor:
    """Masses of [lo, hi] split in `bins` equal bins, plus below / above (bins + 2,), from grid cells (by cell centre)."""
    mass = density * grid.h
    idx = ((grid.x - lo) * (bins / (hi - lo))).floor()
    idx = torch.where(grid.x < lo, -1, torch.where(grid.x >= hi, bins, idx)).long() + 1
    return torch.zeros(bins + 2, dtype=torch.float64).index_add_(0, idx, mass)


def density_steps(process: Process, indices: list[int], sigma_start: float = 0.1) -> int:
    """The steps compare_osmosis_vp reports: the propagator, then each index from the first smooth one on."""
    start = next((i for i in sorted(indices) if process.sigma(i) >= sigma_start), None)
    return 1 + (0 if start is None else sum(1 for i in indices if i >= start))


def compare_osmosis_vp(
    process: Process,
    data: torch.Tensor,
    indices: list[int],
    grid: Grid = Grid(8.0, 1600),
    sigma_start: float = 0.1,
    histograms: dict[int, torch.Tensor] | None = None,
    hist_range: tuple[float, float, int] | None = None,
    method: str = "exact",
    on_step: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """L1 distance over time between the vp grey-value density and the osmosis solution.

    The osmosis solution starts at the first index with sigma_i >= sigma_start
    (where the density is smooth on the grid) from the exact vp density there,
    and is evolved to theta_i = -1/2 ln abar_i for every later index.
    `histograms` (index -> pooled counts from vp forward samples, over
    hist_range = (lo, hi, bins) plus two out-of-range bins) add the L1 of the
    samples against both densities, whose floor is the sampling noise. on_step(done, total) follows the work:
    the propagator, then each later index (density_steps in all).
    """
    if not process.grey_density_is_osmosis:
        raise ScalespaceError(f"the osmosis/vp density comparison is for process 'vp', not {process.name!r}")
    vals, w = grey_values(data)
    abar = process.abar
    start = next((i for i in sorted(indices) if process.sigma(i) >= sigma_start), None)
    if start is None:
        raise ScalespaceError(f"no evaluated step has sigma >= {sigma_start}; evaluate more steps")
    later = [i for i in sorted(indices) if i >= start]
    total = len(later) + 1
    prop = OsmosisPropagator(grid)
    if on_step is not None:
        on_step(1, total)
    u0 = vp_density(vals, w, float(abar[start]), grid)
    u0 = u0 / (u0.sum() * grid.h)
    theta0 = -0.5 * math.log(float(abar[start]))
    rows, snapshots = [], {}
    snap_at = set(later[:: max(1, len(later) // 5)]) | {later[-1]}
    for i in later:
        theta = -0.5 * math.log(float(abar[i]))
        u = prop(u0, theta - theta0) if method == "exact" else prop.explicit(u0, theta - theta0)
        p = vp_density(vals, w, float(abar[i]), grid)
        row: dict[str, Any] = {"index": i, "theta": theta, "l1": float((u - p).abs().sum() * grid.h),
                               "mass": float(u.sum() * grid.h)}
        if histograms is not None and i in histograms and hist_range is not None:
            lo, hi, bins = hist_range
            c = histograms[i] / histograms[i].sum()
            row["l1_samples_osmosis"] = float((c - bin_masses(grid, u, lo, hi, bins)).abs().sum())
            row["l1_samples_exact"] = float((c - bin_masses(grid, p, lo, hi, bins)).abs().sum())
            row["n_values"] = int(histograms[i].sum())
        rows.append(row)
        if i in snap_at:
            snapshots[i] = {"theta": theta, "osmosis": u.tolist(), "vp": p.tolist()}
        if on_step is not None:
            on_step(len(rows) + 1, total)
    return {
        "grid": {"L": grid.L, "cells": grid.G, "h": grid.h}, "start_index": start, "method": method,
        "rows": rows, "max_l1": max(r["l1"] for r in rows), "x": grid.x.tolist(), "snapshots": snapshots,
    }


__all__ = ["Grid", "OsmosisPropagator", "bin_masses", "compare_osmosis_vp", "density_steps", "grey_values", "vp_density"]
