"""All forward scale-space checks of one process (SPEC section 3), and osmosis's own laws.

`forward_checks` gathers F1 to F4 from a forward trajectory (forward_checks.py)
and, for osmosis, the Lyapunov and conservation laws of the filter itself on
the noise-free evolution of data images:

- O1: the relative entropy sum q ln(q / q_v), q = u / sum u, is non-increasing
  (the explicit step is a stochastic matrix with v as fixed point);
- O2: with d = 0 (constant guidance: homogeneous diffusion) the Shannon
  entropy -sum q ln q is non-decreasing;
- O3: the mean grey value is kept exactly and u stays positive.

F5 lives in invariances.py, R1 to R4 in reverse_checks.py.
"""

from __future__ import annotations

import torch

from scalespace.processes import osmosis_scheme as scheme
from scalespace.processes.base import Process
from scalespace.stats.forward_checks import (
    check_f1,
    check_f2,
    check_f3a,
    check_f3b,
    check_f3c,
    check_f3d,
    check_f4,
)
from scalespace.stats.lyapunov import ForwardTrajectory, marginal_path
from scalespace.stats.property_check import Check

#: rounding slack, relative to the values, for the exact (float64) osmosis laws
OSMOSIS_TOL = 1e-12


def forward_checks(process: Process, traj: ForwardTrajectory, u0: torch.Tensor, n_train: int | None) -> list[Check]:
    """F1, F2, F3 a-d, F4 (and O1-O3 for osmosis). u0: data images (B, C, H, W) for the deterministic checks."""
    checks = [
        check_f1(process, traj),
        check_f2(process, traj, u0),
        check_f3a(process),
        check_f3b(process, traj, n_train),
        check_f3c(process, traj),
        check_f3d(process, traj),
        check_f4(process, traj),
    ]
    if process.name == "osmosis":
        checks += osmosis_laws(process, u0[:64], traj.indices)
    return checks


def _steps_up(values: torch.Tensor) -> tuple[float, int]:
    """Largest increase between neighbouring steps over all images: values (steps, images)."""
    d = values[1:] - values[:-1]
    k = int(d.amax(dim=1).argmax())
    return float(d.max()), k


def osmosis_laws(process: Process, u0: torch.Tensor, indices: list[int]) -> list[Check]:
    """O1 to O3 on the noise-free osmosis evolution of data images u0 (B, C, H, W)."""
    c = process.params.offset
    x0 = u0.to(torch.float64)
    ids = torch.arange(x0.shape[0])
    means = marginal_path(process, x0, indices, ids)
    u = torch.stack([means[i] + c for i in indices])  # (steps, B, C, H, W), positive
    v = process.guidance(ids, x0.shape[0], torch.float64, "cpu")
    rel = torch.stack([scheme.relative_entropy(u[k], v.expand_as(u[k])) for k in range(len(indices))])
    tol1 = OSMOSIS_TOL * max(1.0, float(rel.abs().max()))
    up, k = _steps_up(rel)
    checks = [Check(
        "O1", "O1 osmosis relative entropy to the guidance non-increasing", process.name, True, up <= tol1, up, tol1,
        f"sum q ln(q / q_v), q = u / sum u, for {x0.shape[0]} images over {len(indices)} steps. Figure: the largest "
        f"increase between neighbouring steps (at index {indices[k]}).",
        details={"indices": indices, "values": rel.mean(dim=1).tolist()},
    )]
    # d = 0: constant guidance, homogeneous diffusion, on the same time grid
    flat = scheme.drift(torch.ones((1,) + tuple(process.shape), dtype=torch.float64))
    times = process.times()
    h, prev, x = [], 0.0, x0 + c
    for i in indices:
        x = scheme.evolve_explicit(x, flat, float(times[i]) - prev)
        prev = float(times[i])
        h.append(scheme.shannon_entropy(x))
    ent = torch.stack(h)
    down, k2 = _steps_up(-ent)
    tol2 = OSMOSIS_TOL * max(1.0, float(ent.abs().max()))
    checks.append(Check(
        "O2", "O2 homogeneous diffusion (d = 0): Shannon entropy non-decreasing", process.name, True, down <= tol2, down, tol2,
        f"-sum q ln q for the same {x0.shape[0]} images under osmosis with constant guidance. Figure: the largest decrease "
        f"between neighbouring steps (at index {indices[k2]}).",
        details={"indices": indices, "values": ent.mean(dim=1).tolist()},
    ))
    mass = u.mean(dim=(-2, -1))
    drift_mass = float((mass - mass[0]).abs().max() / mass.abs().max())
    low = float(u.min())
    checks.append(Check(
        "O3", "O3 osmosis keeps the mean exactly and stays positive", process.name, True,
        drift_mass <= OSMOSIS_TOL and low > 0, drift_mass, OSMOSIS_TOL,
        f"Largest relative change of an image's mean over {len(indices)} steps; smallest value {low:.4g} (with the "
        f"positivity offset {c:g}) must stay > 0.",
    ))
    return checks


__all__ = ["OSMOSIS_TOL", "forward_checks", "osmosis_laws"]
