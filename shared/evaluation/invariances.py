"""F5 invariances: apply a transform before the process and after it, compare the statistics.

For a transform g and data u_0, X1 = u_t of g(u_0) (noise g(z)) and X2 = g(u_t
of u_0) (noise z). g(z) is standard normal like z, so when the process
commutes with g the two sample sets are equal in law; pairing the noise makes
them equal sample by sample, so any difference left is the process failing to
commute, not sampling noise. The figure compares the two sets' first two
moments (moment_discrepancy) and takes the largest over the checked steps.

Theory (SPEC F5): vp and ve commute with every orthogonal map; blurring and
heat (DCT-diagonal, Neumann boundaries) only with flips, transposition, 90
degree rotations and channel permutations, NOT with pixel permutations or
circular shifts. A grey shift u_0 + c moves u_t by c times the DC factor
(sqrt(abar_t) for vp, a_t for blurring, 1 for ve and heat). Osmosis keeps
each image's mean exactly; heat keeps it in expectation.
"""

from __future__ import annotations

from typing import Callable

import torch

from scalespace.evaluation.check import Check, not_applicable
from scalespace.evaluation.forward import Z_SCORE
from scalespace.evaluation.forward_trajectory import marginal_path
from scalespace.noise import Stream, normal
from scalespace.processes.base import Process

F5_TOL = 1e-6
GREY_SHIFT = 0.1
MEAN_TOL = 1e-12

Transform = Callable[[torch.Tensor], torch.Tensor]


def transforms(shape: tuple[int, int, int], seed: int = 0) -> dict[str, tuple[str, Transform | None]]:
    """name -> (description, g) for images (B, C, H, W); g is None where it does not apply to this shape."""
    c, h, w = shape
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(h * w, generator=g)

    def permute(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(-2)[..., perm].reshape(x.shape)

    square = h == w
    return {
        "permutation": ("a fixed random permutation of the pixel positions", permute),
        "circular-shift": ("a circular shift by one pixel to the right", lambda x: torch.roll(x, 1, dims=-1)),
        "flip-horizontal": ("a left-right flip", lambda x: x.flip(-1)),
        "flip-vertical": ("an up-down flip", lambda x: x.flip(-2)),
        "transpose": ("transposition", (lambda x: x.transpose(-2, -1)) if square else None),
        "rotate-90": ("a rotation by 90 degrees", (lambda x: torch.rot90(x, 1, dims=(-2, -1))) if square else None),
        "channel-permutation": ("a cyclic permutation of the channels", (lambda x: torch.roll(x, 1, dims=-3)) if c > 1 else None),
    }


def _forward(process: Process, u0: torch.Tensor, z: torch.Tensor, indices: list[int], ids: torch.Tensor) -> dict[int, torch.Tensor]:
    means = marginal_path(process, u0, indices, ids)
    return {i: means[i] + process.sigma(i) * z for i in indices}


def moment_discrepancy(a: torch.Tensor, b: torch.Tensor) -> float:
    """How far the first two moments of sample sets a and b (B, ...) differ, relative to b's.

    max(|mu_a - mu_b|^2 / E|b|^2, |S_a - S_b|_F / |S_b|_F): zero to rounding when
    the sets agree, and no eigensolves, so it stays cheap for large images.
    """
    xa, xb = a.reshape(a.shape[0], -1).to(torch.float64), b.reshape(b.shape[0], -1).to(torch.float64)
    ma, mb = xa.mean(0), xb.mean(0)
    ca, cb = (xa - ma).T @ (xa - ma), (xb - mb).T @ (xb - mb)
    energy = float((xb * xb).sum(1).mean())
    d_mean = float(((ma - mb) ** 2).sum()) / max(energy, 1e-300)
    d_cov = float((ca - cb).norm() / cb.norm().clamp_min(1e-300))
    return max(d_mean, d_cov)


def _expected_reason(process: Process, key: str) -> str:
    if process.isotropic:
        return "vp and ve act on every pixel alike and independently, so they commute with every orthogonal map."
    if process.spectral:
        if key in ("permutation", "circular-shift"):
            return ("Blurring couples neighbouring pixels with Neumann (reflecting) boundaries: it does NOT commute with "
                    "this map, and the check must report that.")
        return "The DCT modes map to themselves (up to sign) under this map, so the process commutes with it."
    return "The guidance image v is fixed noise, so theory promises no spatial symmetry; shown, not asserted."


def check_invariances(process: Process, u0: torch.Tensor, indices: list[int], seed: int = 0) -> list[Check]:
    """Every F5 check on data u0 (B, C, H, W) at the given process indices."""
    u0 = u0.to(torch.float64)
    ids = torch.arange(u0.shape[0])
    z = normal(seed, ids, 0, process.shape, Stream.FORWARD).to(torch.float64)
    base = _forward(process, u0, z, indices, ids)
    checks = []
    for key, (desc, g) in transforms(process.shape, seed).items():
        name = f"F5 invariance under {key.replace('-', ' ')}"
        if g is None:
            checks.append(not_applicable(f"F5-{key}", name, process.name, f"{desc} does not apply to images of shape {process.shape}"))
            continue
        moved = _forward(process, g(u0), g(z), indices, ids)
        figs = {i: moment_discrepancy(moved[i], g(base[i])) for i in indices}
        worst_i = max(figs, key=lambda i: figs[i])
        worst = figs[worst_i]
        checks.append(Check(
            f"F5-{key}", name, process.name, True, worst <= F5_TOL, worst, F5_TOL,
            f"u_t of g(u_0) against g(u_t), g = {desc}, {u0.shape[0]} images, {len(indices)} steps; "
            f"largest relative difference of mean and covariance at index {worst_i}. {_expected_reason(process, key)}",
            details={"indices": list(figs), "values": list(figs.values())},
        ))
    checks.append(_grey_shift(process, u0, z, indices, ids, base))
    checks.append(_mean(process, u0, z, indices, ids, base))
    return checks


def _dc_factor(process: Process, i: int) -> float:
    a = process.alpha(i)
    return float(a if a.ndim == 0 else a[0, 0])


def _grey_shift(process, u0, z, indices, ids, base) -> Check:
    name = f"F5 grey shift u_0 + {GREY_SHIFT:g} moves u_t by the DC factor"
    if not process.spectral:
        return not_applicable("F5-grey-shift", name, process.name,
                              "osmosis flows a constant image towards the guidance, so a grey shift has no simple image; see F5 mean")
    moved = _forward(process, u0 + GREY_SHIFT, z, indices, ids)
    figs = {i: moment_discrepancy(moved[i], base[i] + GREY_SHIFT * _dc_factor(process, i)) for i in indices}
    worst_i = max(figs, key=lambda i: figs[i])
    rule = process.dc_factor_text
    return Check(
        "F5-grey-shift", name, process.name, True, figs[worst_i] <= F5_TOL, figs[worst_i], F5_TOL,
        f"u_t of u_0 + c against u_t of u_0 plus {rule} (the DC mode's factor); largest relative difference of "
        f"mean and covariance at index {worst_i}.",
        details={"indices": list(figs), "values": list(figs.values())},
    )


def _mean(process, u0, z, indices, ids, base) -> Check:
    name = "F5 mean grey value preserved"
    m0 = u0.mean(dim=(-2, -1))
    if process.keeps_mean == "exactly":
        means = marginal_path(process, u0, indices, ids)
        dev = max(float((means[i].mean(dim=(-2, -1)) - m0).abs().max()) for i in indices)
        tol = MEAN_TOL * max(1.0, float(m0.abs().max()) + process.params.offset)
        return Check("F5-mean", name, process.name, True, dev <= tol, dev, tol,
                     f"Largest change of an image's (noise-free) mean grey value over {len(indices)} steps: osmosis keeps it exactly.")
    if process.keeps_mean != "in expectation":
        return not_applicable("F5-mean", name, process.name, "promised for heat (in expectation) and osmosis (exactly)")
    best = None  # (excess over the allowed, figure, allowed) at the worst step
    for i in indices:
        d = (base[i].mean(dim=(-2, -1)) - m0).flatten()
        se = float(d.std() / d.numel() ** 0.5) if d.numel() > 1 else 0.0
        fig, allowed = abs(float(d.mean())), Z_SCORE * se + 1e-12
        if best is None or fig - allowed > best[0]:
            best = (fig - allowed, fig, allowed)
    _, worst, tol = best
    return Check("F5-mean", name, process.name, True, worst <= tol, worst, tol,
                 f"Average change of the images' mean grey value over {u0.shape[0]} samples: heat keeps the DC mode, so the mean "
                 f"moves only by its noise; allowed {Z_SCORE:g} standard errors.")


__all__ = ["check_invariances", "moment_discrepancy", "transforms"]
