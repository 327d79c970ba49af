"""The laws of the osmosis filter itself, on the noise-free evolution of data images.

- O1: the relative entropy sum q ln(q / q_v), q = u / sum u, is non-increasing
  (the explicit step is a stochastic matrix with v as fixed point);
- O2: with d = 0 (constant guidance: homogeneous diffusion) the Shannon
  entropy -sum q ln q is non-decreasing;
- O3: the mean grey value is kept exactly and u stays positive.

forward.py's `forward_checks` adds them to F1 to F4 for osmosis.
"""

from __future__ import annotations

import torch

from scalespace.evaluation.check import Check
from scalespace.evaluation.forward_trajectory import marginal_path
from scalespace.kernels import dispatch
from scalespace.processes import osmosis_scheme as scheme
from scalespace.processes.base import DriftDiffusionProcess

#: rounding slack, relative to the values, for the exact (float64) osmosis laws
OSMOSIS_TOL = 1e-12


def _steps_up(values: torch.Tensor) -> tuple[float, int]:
    """Largest increase between neighbouring steps over all images: values (steps, images)."""
    d = values[1:] - values[:-1]
    k = int(d.amax(dim=1).argmax())
    return float(d.max()), k


def osmosis_laws(
    process: DriftDiffusionProcess, u0: torch.Tensor, indices: list[int],
    run: scheme.ExplicitSteps = dispatch.osmosis_explicit,
) -> list[Check]:
    """O1 to O3 on the noise-free osmosis evolution of data images u0 (B, C, H, W).

    All three are bounds against a rounding tolerance: O1 and O3 read the process's own evolution
    (marginal_means), O2 runs the explicit steps `run` (the dispatch's kernel) with constant guidance."""
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
        x = scheme.evolve_explicit(x, flat, float(times[i]) - prev, run=run)
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


__all__ = ["OSMOSIS_TOL", "osmosis_laws"]
