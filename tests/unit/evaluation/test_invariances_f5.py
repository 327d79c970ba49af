"""F5 invariances: a two-sample test that can fail, the grey shift against its closed form, and stated power."""

import re

import pytest
import torch

from scalespace.evaluation.forward_trajectory import eval_indices
from scalespace.evaluation.invariances import (
    LEVEL, POWER_NS, check_invariances, counterexample, dc_gain, invariance_test, permutation_p_values, power_n,
    relabellings, transforms, two_sample_statistics,
)
from scalespace.processes import make_process
from scalespace.processes.blurring import Blurring
from scalespace.processes.vp import VP

SHAPE = (1, 8, 8)
STEPS = 8


def _indices(p):
    return eval_indices(p.T, STEPS)


def _checks(process, u0):
    return {c.key: c for c in check_invariances(process, u0, _indices(process), seed=0)}


def _maps(checks):
    return [c for k, c in checks.items() if c.applies and k not in ("F5-grey-shift", "F5-mean")]


# --- counterexamples: maps the process does not commute with are reported as failing --------------------


@pytest.mark.parametrize("name, what", [("vp", "scale"), ("vp", "add"), ("ve", "scale")])
def test_vp_and_ve_reject_maps_that_are_not_orthogonal(name, what, digits):
    """With one noise shared by both runs these came out as exact zeros; with independent noise they fail."""
    p = make_process(name, SHAPE)
    g = (lambda x: 1.5 * x) if what == "scale" else (lambda x: x + 0.5)
    res = invariance_test(p, digits[:32], g, _indices(p))
    assert min(res["adjusted"]) <= LEVEL


def test_ve_commutes_with_adding_a_constant_image(digits):
    """ve only adds noise, u_t = u_0 + sigma_t z, so adding an image before or after it is the same in law."""
    p = make_process("ve", SHAPE)
    res = invariance_test(p, digits[:32], lambda x: x + 0.5, _indices(p))
    assert min(res["adjusted"]) > LEVEL


@pytest.mark.parametrize("name", ["blurring", "heat"])
def test_blurring_and_heat_report_pixel_maps_as_failing(name, digits):
    checks = _checks(make_process(name, SHAPE), digits[:32])
    for key in ("F5-permutation", "F5-circular-shift"):
        c = checks[key]
        assert c.kind == "test" and c.expected == "fails"
        assert c.holds is False and c.agrees and c.figure <= LEVEL == c.tolerance, (key, c.figure)


# --- passing: orthogonal maps (and the DCT's symmetries for blurring and heat) ---------------------------


@pytest.mark.parametrize("name", ["vp", "ve", "blurring", "heat"])
def test_maps_theory_says_commute_pass(name, digits):
    checks = _checks(make_process(name, SHAPE), digits[:64])
    held = [c for c in _maps(checks) if c.expected == "holds"]
    assert len(held) >= (6 if name in ("vp", "ve") else 4)
    for c in held:
        assert c.kind == "test" and c.holds is True and c.figure > LEVEL, (c.key, c.figure)
        assert len(c.details["p_values"]) == len(c.details["indices"]) == len(c.details["adjusted"])


def test_the_test_keeps_its_level_when_the_laws_agree():
    """Two samples of one law: the adjusted p-value falls at or below 0.1 in about 10% of the draws."""
    rejected = 0
    for seed in range(60):
        g = torch.Generator().manual_seed(seed)
        x, y = torch.randn(2, 16, 32, generator=g, dtype=torch.float64).unbind(0)
        w = relabellings(16, 199, seed)
        rows = torch.cat([two_sample_statistics(x, y, w), two_sample_statistics(x.flip(0), y, w)])
        rejected += float(permutation_p_values(rows)[1].min()) <= 0.1
    assert rejected <= 12


def test_p_values_are_permutation_p_values():
    stats = torch.tensor([[5.0, 1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    raw, adjusted = permutation_p_values(stats)
    assert raw.tolist() == [0.25, 1.0]  # the true labelling is the largest of four; ties count against it
    assert adjusted.tolist() == [0.25, 1.0]


# --- the grey shift against the closed form -----------------------------------------------------------------


class WrongDCVP(VP):
    """A vp whose signal factor is abar_t instead of sqrt(abar_t): its own alpha_t(0) agrees with itself."""

    def alpha(self, i):
        return self.abar[i]


class WrongDCBlurring(Blurring):
    """A blurring whose dissipation leaks 10% of the DC mode."""

    def dissipation(self, i):
        d = super().dissipation(i).clone()
        d[0, 0] *= 0.9 if i > 0 else 1.0
        return d


@pytest.mark.parametrize("cls", [WrongDCVP, WrongDCBlurring])
def test_grey_shift_catches_a_wrong_dc_gain(cls, digits):
    p = cls(SHAPE)
    c = next(c for c in check_invariances(p, digits[:16], _indices(p)) if c.key == "F5-grey-shift")
    assert c.applies and c.expected == "holds" and c.holds is False and not c.agrees and c.figure > 1e-3


@pytest.mark.parametrize("name", ["vp", "ve", "blurring", "heat", "osmosis"])
def test_grey_shift_of_the_real_processes_matches_the_closed_form(name, digits):
    p = make_process(name, SHAPE)
    c = next(c for c in check_invariances(p, digits[:16], _indices(p)) if c.key == "F5-grey-shift")
    assert c.applies and c.holds is True and c.figure <= c.tolerance and c.agrees


def test_closed_form_dc_gains():
    vp, ve, heat, blur = (make_process(n, SHAPE) for n in ("vp", "ve", "heat", "blurring"))
    assert dc_gain(vp, 0) == 1.0 and dc_gain(vp, 500) == pytest.approx(float(vp.abar[500].sqrt()), rel=1e-12)
    assert dc_gain(ve, 700) == dc_gain(heat, 50) == 1.0
    assert dc_gain(blur, 300) == pytest.approx(float(blur.alpha(300)[0, 0]), rel=1e-12)
    assert dc_gain(make_process("osmosis", SHAPE), 3) is None


# --- power ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vp", "ve", "blurring", "heat"])
def test_every_map_check_states_its_power(name, digits):
    checks = _checks(make_process(name, SHAPE), digits[:64])
    for c in _maps(checks):
        power = c.details["power"]
        assert power["n"] in POWER_NS and power["tried"] == [16, 32, 64], (c.key, power)
        assert re.search(r"Power: .* from n = \d+ images on", c.explanation)
        assert c.details["level"] == LEVEL and c.details["permutations"] >= 1000
    if name == "heat":
        mean = checks["F5-mean"]
        assert mean.kind == "test" and mean.details["power"]["n"] in POWER_NS and "Power:" in mean.explanation


@pytest.mark.parametrize("name", ["vp", "blurring"])
def test_power_n_rejects_the_counterexample_at_a_modest_n(name, digits):
    p = make_process(name, SHAPE)
    desc, g = counterexample(p)
    n, tried = power_n(p, digits[:64], g, _indices(p))
    assert n is not None and n <= 32 and tried == [16, 32, 64], desc
    # and the maps theory says commute are not rejected at those sizes
    flip = transforms(p.shape)["flip-horizontal"][1]
    assert power_n(p, digits[:64], flip, _indices(p))[0] is None
