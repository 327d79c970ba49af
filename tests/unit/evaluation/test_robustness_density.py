"""Robustness figures (SPEC section 6) and the osmosis/vp density comparison (SPEC section 2)."""

import math

import pytest
import torch

from scalespace.denoisers import OracleDenoiser
from scalespace.processes import make_process
from scalespace.sampling.pipeline import generate
from scalespace.evaluation.density import Grid, OsmosisPropagator, compare_osmosis_vp, vp_density
from scalespace.evaluation.robustness import memorisation, samplers_for, seed_spread, sensitivity
from scalespace.stats.features import get_extractor
from scalespace.stats.reference_cache import QualityReference


def test_sensitivity_shares_the_per_step_noise(digits):
    vp = make_process("vp", (1, 8, 8))
    oracle = OracleDenoiser(vp, digits[:300])
    assert samplers_for(vp) == ["ancestral", "ddim"] and samplers_for(make_process("heat", (1, 8, 8))) == ["heat"]
    out = {s: sensitivity(vp, oracle, digits[:300], 16, 0, 20, s, eps=(1e-6, 1.0, 3.0, 30.0)) for s in ("ancestral", "ddim")}
    ddim = [r["distance_mean"] for r in out["ddim"]["rows"]]
    # DDIM is a deterministic map of u_T: a tiny push changes nothing, a push as large as u_T changes the output
    assert ddim[0] < 1e-3 and ddim[3] > 1.0 and ddim == sorted(ddim)
    assert 0.1 < out["ddim"]["slope"] < 2
    # the ancestral chain draws fresh (but shared) noise at every step and forgets most of its start
    assert out["ancestral"]["rows"][3]["distance_mean"] < 0.5 * ddim[3]
    assert out["ddim"]["steps"] == 20 and out["ddim"]["n"] == 16


def test_seed_spread_and_memorisation_of_the_oracle(digits):
    vp = make_process("vp", (1, 8, 8))
    train, heldout = digits[:400], digits[400:600]
    oracle = OracleDenoiser(vp, train)
    ex = get_extractor("pixels")
    ref = QualityReference(ex(heldout), ex)
    out = seed_spread(lambda s: generate(vp, oracle, 48, s, steps=20, train=train), [0, 1, 2], ref, n_boot=20)
    assert len(out["per_seed"]) == 3 and out["std"] > 0 and out["mean_ci_low"] <= out["mean"] <= out["mean_ci_high"]
    for r in out["per_seed"]:
        assert r["n"] == 48 and r["ci_low"] < r["ci_high"] and r["kid_mean"] is not None
    samples = generate(vp, oracle, 48, 0, steps=50, train=train)
    copies = memorisation(samples, train, heldout)
    fresh = memorisation(digits[600:648], train, heldout)
    assert copies["ratio"] < 0.3 < 0.7 < fresh["ratio"] < 1.5  # the oracle reproduces its training set


def test_osmosis_matches_the_vp_density_to_the_grid_error(digits):
    vp = make_process("vp", (1, 8, 8))
    idx = list(range(0, 1001, 100))
    coarse = compare_osmosis_vp(vp, digits, idx, Grid(8.0, 400))
    fine = compare_osmosis_vp(vp, digits, idx, Grid(8.0, 1600))
    assert fine["max_l1"] < 2e-4  # "of order 1e-4 for a fine grid"
    # second order in the cell width: 4 times finer, about 16 times smaller
    assert 8 < coarse["max_l1"] / fine["max_l1"] < 32
    assert fine["rows"][-1]["l1"] < 1e-6  # both end at the standard normal density
    # the explicit scheme of shared/processes/osmosis_scheme.py agrees with the exact time integration
    explicit = compare_osmosis_vp(vp, digits, idx[:4], Grid(8.0, 200), method="explicit")
    exact = compare_osmosis_vp(vp, digits, idx[:4], Grid(8.0, 200))
    for a, b in zip(explicit["rows"], exact["rows"]):
        assert abs(a["l1"] - b["l1"]) < 0.5 * max(a["l1"], b["l1"]) + 1e-12


def test_osmosis_propagator_keeps_mass_and_reaches_the_guidance():
    grid = Grid(6.0, 300)
    prop = OsmosisPropagator(grid)
    u0 = vp_density(torch.tensor([-0.5, 0.8], dtype=torch.float64), torch.tensor([0.3, 0.7], dtype=torch.float64), 0.9, grid)
    for theta in (0.1, 1.0, 10.0):
        u = prop(u0, theta)
        assert float(u.sum() * grid.h) == pytest.approx(float(u0.sum() * grid.h), rel=1e-10)
    v = torch.exp(-grid.x**2 / 2) / math.sqrt(2 * math.pi)
    assert float((prop(u0, 30.0) - v * float(u0.sum()) / float(v.sum())).abs().max()) < 1e-8
