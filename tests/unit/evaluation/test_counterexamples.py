"""Every property check of the evaluate report against a counterexample.

For each check the suite builds an input that violates exactly that property and asserts that the check reports
it failing (holds False), and one where the property holds and the check passes. Checks whose counterexamples
live elsewhere: F4 and R1 (test_steady_state_kl.py), the F5 maps and the grey shift (test_invariances_f5.py),
R4 (test_reverse_r4.py). Identities are labelled so and not counted by the banner.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

from scalespace.data import load_dataset
from scalespace.denoisers.oracle import OracleDenoiser
from scalespace.evaluation.check import counted
from scalespace.evaluation.forward import (
    F2_LEVEL, _f2_osmosis, _triples, check_f1, check_f2, check_f3a, check_f3b, check_f3c, check_f3d,
)
from scalespace.evaluation.forward_trajectory import ForwardTrajectory, eval_indices, forward_trajectory
from scalespace.evaluation.invariances import check_invariances
from scalespace.evaluation.osmosis_laws import osmosis_laws
from scalespace.evaluation.reverse import ReverseRun, check_r2, check_r3
from scalespace.processes import make_process
from scalespace.processes import osmosis_scheme as scheme
from scalespace.processes.heat import Heat
from scalespace.processes.osmosis import Osmosis
from scalespace.processes.ve import VE
from scalespace.processes.vp import VP
from scalespace.sampling.samplers import StepInfo, sample_ancestral

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return load_dataset("digits", "train", limit=256).images.to(torch.float64)


# --- the counterexample processes --------------------------------------------------------------------------------


class ShiftedStartVP(VP):
    """A vp whose state at index 0 is the data scaled by 0.9: p(u_0) is not the data distribution (F1)."""

    def marginal_mean(self, i, u0, ids=None):
        m = super().marginal_mean(i, u0, ids)
        return 0.9 * m if i == 0 else m


class DippingVE(VE):
    """A ve whose sigma goes down between indices 3 and 4: sigma_{4|3}^2 < 0, no transition exists (F2), and
    H(u_t | u_0) decreases there (F3a). The schedule's validation would refuse it; this one skips it."""

    def validate(self):
        pass


def _dipping_ve() -> DippingVE:
    return DippingVE(SHAPE, {"sigmas": [0.1, 0.2, 0.4, 0.3, 0.8, 1.6, 3.2, 6.4]})


class TwiceNoisedVP(VP):
    """A vp whose transition adds the marginal's noise sigma_t^2 on top of u_s's: two-step sampling ends with too
    much noise, so Chapman-Kolmogorov fails although every marginal is right (F2)."""

    def sample_transition(self, s, t, u_s, z):
        a, _ = self.transition(s, t)
        return a * u_s + self.sigma(t) * z


class MassLosingOsmosis(Osmosis):
    """An osmosis whose evolution loses 1% of the (offset) mass per step: the mean is not kept (O3, F5-mean); the
    normalised q = u / sum u, hence O1, is unchanged."""

    def marginal_means(self, u0, indices, ids=None):
        c = self.params.offset
        return {i: (m + c) * 0.99**i - c for i, m in super().marginal_means(u0, indices, ids).items()}


class RewindingOsmosis(Osmosis):
    """An osmosis whose last state jumps back to its first: the relative entropy to the guidance goes up (O1);
    the mean is still kept and the values positive."""

    def marginal_means(self, u0, indices, ids=None):
        out = super().marginal_means(u0, indices, ids)
        out[indices[-1]] = out[indices[0]].clone()
        return out


class LeakyHeat(Heat):
    """A heat process whose mean grey value shrinks by 5% after index 0 (F5-mean: heat keeps the DC mode)."""

    def marginal_mean(self, i, u0, ids=None):
        m = super().marginal_mean(i, u0, ids)
        return m - 0.05 * u0.mean(dim=(-2, -1), keepdim=True) if i > 0 else m


def _sharpen(u, d, tau, steps):
    """Not diffusion: q -> q^1.5, renormalised to the same mass. Positive, mass-preserving, entropy goes DOWN (O2)."""
    w = u**1.5
    return w * (u.sum(dim=(-3, -2, -1), keepdim=True) / w.sum(dim=(-3, -2, -1), keepdim=True))


def _one_euler_step(u, d, tau, steps):
    """The whole interval as ONE explicit step u + t A u, unstable and not a semigroup (osmosis F2)."""
    return u + (tau * steps.reshape(tau.shape)) * scheme.apply_operator(u, d)


# --- F1 --------------------------------------------------------------------------------------------------------


def test_f1_fails_when_index_0_moves_the_data(digits):
    p = ShiftedStartVP(SHAPE)
    traj = forward_trajectory(p, digits, 64, 0, [0, p.T // 2, p.T])
    c = check_f1(p, traj, digits[:16])
    assert c.kind == "bound" and c.holds is False and c.figure > 5 * c.tolerance and not c.agrees


def test_f1_holds_for_heat_as_a_bound_and_is_an_identity_for_vp_and_ve(digits):
    heat = make_process("heat", SHAPE)
    c = check_f1(heat, forward_trajectory(heat, digits, 64, 0, [0, heat.T]), digits[:16])
    assert c.kind == "bound" and c.holds is True and 0 < c.figure <= c.tolerance and c.counts
    for name in ("vp", "ve"):
        p = make_process(name, SHAPE)
        c = check_f1(p, forward_trajectory(p, digits, 64, 0, [0, p.T]), digits[:16])
        assert c.kind == "identity" and c.holds is True and c.figure < 1e-12
        assert not c.counts and not counted(c.to_dict()) and "identity" in c.explanation


# --- F2 --------------------------------------------------------------------------------------------------------


def _traj(p, steps: int = 8) -> ForwardTrajectory:
    """A trajectory with the evaluated indices only (F2 reads nothing else)."""
    return ForwardTrajectory(eval_indices(p.T, steps), math.prod(p.shape))


def test_f2_fails_when_a_transition_has_a_negative_variance(digits):
    p = _dipping_ve()
    a, s2 = p.transition(3, 4)
    assert float(s2) < 0
    c = check_f2(p, _traj(p, p.T), digits[:32])
    assert c.kind == "test" and c.holds is False and c.figure is None and not c.agrees
    assert "negative variance" in c.explanation.lower() and "no gaussian p(u_t | u_s) exists" in c.explanation.lower()
    assert c.details["min_transition_variance"] < 0 and c.details["at"] == [3, 4]
    with pytest.raises(Exception, match="no transition"):
        p.sample_transition(3, 4, digits[:2], torch.zeros_like(digits[:2]))


def test_f2_rejects_a_transition_that_counts_the_noise_twice(digits):
    p = TwiceNoisedVP(SHAPE)
    c = check_f2(p, _traj(p), digits[:64])
    assert c.kind == "test" and c.holds is False and c.figure <= F2_LEVEL and not c.agrees


@pytest.mark.parametrize("name", ["vp", "ve", "blurring", "heat"])
def test_f2_holds_for_the_linear_gaussian_processes_and_states_level_and_power(name, digits):
    p = make_process(name, SHAPE)
    c = check_f2(p, _traj(p), digits[:64])
    assert c.kind == "test" and c.counts and c.holds is True and c.figure > F2_LEVEL and c.tolerance == F2_LEVEL
    assert f"level {F2_LEVEL:g}" in c.explanation and "Power:" in c.explanation
    power = c.details["power"]
    assert power["tried"] == [16, 32, 64]
    if name in ("vp", "blurring"):  # the twice-counted noise is a large share of the marginal variance
        assert power["n"] is not None and power["n"] <= 64
        assert f"from n = {power['n']} images on" in c.explanation


def test_f2_for_osmosis_is_the_semigroup_of_its_evolution_and_fails_for_a_scheme_that_is_not_one(digits):
    p = make_process("osmosis", SHAPE, {"K": 10})
    c = check_f2(p, _traj(p, 10), digits[:8])
    assert c.kind == "bound" and c.holds is True and "no sampling transition" in c.explanation
    bad = _f2_osmosis(p, _triples(eval_indices(p.T, 10)), digits[:8], run=_one_euler_step)
    assert bad.holds is False and bad.figure > bad.tolerance


# --- F3 a to d ---------------------------------------------------------------------------------------------------


def test_f3a_fails_when_sigma_goes_down_and_holds_for_vp():
    bad = check_f3a(_dipping_ve())
    assert bad.holds is False and bad.figure > 0 and not bad.agrees
    assert check_f3a(make_process("vp", SHAPE)).holds is True


def _synthetic(values: dict[str, list[float]], n: int = 64, paired: float = 0.01, own: float = 1e-5,
               seed: int = 0) -> ForwardTrajectory:
    """A trajectory over indices 0..k-1 whose per-sample measure at index i is values[i] plus noise: `paired` (sd)
    shared by a sample across the indices (common random numbers, it cancels in the steps) and `own` (sd) drawn
    afresh at each index."""
    k = len(next(iter(values.values())))
    traj = ForwardTrajectory(list(range(k)), 4, n_train=100)
    g = torch.Generator().manual_seed(seed)
    shared = paired * torch.randn(n, generator=g, dtype=torch.float64)
    x = torch.zeros(n, 4, dtype=torch.float64)
    traj.add(x, x, {i: x for i in range(k)},
             {m: {i: v[i] + shared + own * torch.randn(n, generator=g, dtype=torch.float64) for i in range(k)}
              for m, v in values.items()})
    return traj


def _vp():
    return make_process("vp", SHAPE, {"T": 4})


def test_f3b_fails_on_an_information_loss_that_goes_down():
    down = check_f3b(_vp(), _synthetic({"post_entropy": [0.0, 1.0, 0.5, 2.0, 3.0]}), 100)
    assert down.kind == "test" and down.holds is False and down.figure == pytest.approx(0.5, abs=1e-3)
    over = check_f3b(_vp(), _synthetic({"post_entropy": [0.0, 1.0, 2.0, 4.0, 6.0]}), 100)  # ln 100 = 4.6
    assert over.holds is False and "OUT OF BOUNDS" in over.explanation
    up = check_f3b(_vp(), _synthetic({"post_entropy": [0.0, 1.0, 2.0, 3.0, 4.0]}), 100)
    assert up.holds is True and up.figure < 0


def test_f3c_fails_on_a_kl_to_n01_that_goes_up():
    up = check_f3c(_vp(), _synthetic({"kl": [10.0, 5.0, 6.0, 1.0, 0.1]}))
    assert up.kind == "test" and up.holds is False and up.expected == "holds" and not up.agrees
    down = check_f3c(_vp(), _synthetic({"kl": [10.0, 5.0, 2.0, 1.0, 0.1]}))
    assert down.holds is True and down.agrees


def test_f3d_reports_a_marginal_entropy_that_goes_down():
    # F3d reads -log_p: log p going UP is the entropy going down
    dec = check_f3d(_vp(), _synthetic({"log_p": [-1.0, -2.0, -1.5, -3.0, -4.0]}))
    assert dec.holds is False and dec.expected == "report" and not dec.counts and "DECREASES" in dec.explanation
    inc = check_f3d(_vp(), _synthetic({"log_p": [-1.0, -2.0, -2.5, -3.0, -4.0]}))
    assert inc.holds is True


def test_a_monte_carlo_step_within_its_noise_does_not_count():
    # a step down of 0.001 with noise 0.01 of its own at each index, 64 samples: within 4 standard errors
    wobble = check_f3b(_vp(), _synthetic({"post_entropy": [0.0, 1.0, 0.999, 2.0, 3.0]}, own=0.01), 100)
    assert wobble.holds is True and wobble.figure == pytest.approx(0.001, abs=5e-3) and wobble.tolerance > 0.001
    # the same step with the noise shared by the indices (paired) counts
    assert check_f3b(_vp(), _synthetic({"post_entropy": [0.0, 1.0, 0.999, 2.0, 3.0]}), 100).holds is False


# --- F5: the mean grey value (the maps and the grey shift: test_invariances_f5.py) ----------------------------


def _mean_check(p, digits):
    return next(c for c in check_invariances(p, digits[:16], eval_indices(p.T, 4)) if c.key == "F5-mean")


def test_f5_mean_fails_when_heat_leaks_its_mean_and_holds_for_heat(digits):
    bad = _mean_check(LeakyHeat(SHAPE), digits)
    assert bad.kind == "test" and bad.holds is False and not bad.agrees
    good = _mean_check(make_process("heat", SHAPE), digits)
    assert good.holds is True and good.agrees


def test_f5_mean_fails_when_osmosis_loses_mass(digits):
    bad = _mean_check(MassLosingOsmosis(SHAPE, {"K": 10}), digits)
    assert bad.holds is False and bad.figure > bad.tolerance
    good = _mean_check(make_process("osmosis", SHAPE, {"K": 10}), digits)
    assert good.holds is True


# --- O1 to O3 ----------------------------------------------------------------------------------------------------


def _laws(p, digits, **kw):
    return {c.key: c for c in osmosis_laws(p, digits[:16], eval_indices(p.T, 5), **kw)}


def test_osmosis_laws_hold_for_osmosis(digits):
    laws = _laws(make_process("osmosis", SHAPE, {"K": 10}), digits)
    assert all(laws[k].holds is True and laws[k].agrees for k in ("O1", "O2", "O3"))
    assert all(laws[k].kind == "bound" and laws[k].counts for k in ("O1", "O2", "O3"))


def test_o1_fails_when_the_relative_entropy_goes_back_up(digits):
    laws = _laws(RewindingOsmosis(SHAPE, {"K": 10}), digits)
    assert laws["O1"].holds is False and laws["O1"].figure > 1e-3
    assert laws["O3"].holds is True  # mean and positivity are untouched: exactly O1 is violated


def test_o2_fails_for_a_step_that_concentrates_mass(digits):
    laws = _laws(make_process("osmosis", SHAPE, {"K": 10}), digits, run=_sharpen)
    assert laws["O2"].holds is False and laws["O2"].figure > 1e-3
    assert laws["O1"].holds is True and laws["O3"].holds is True  # the process itself is untouched


def test_o3_fails_when_the_mean_is_not_kept(digits):
    laws = _laws(MassLosingOsmosis(SHAPE, {"K": 10}), digits)
    assert laws["O3"].holds is False and laws["O3"].figure > 1e-3
    assert laws["O1"].holds is True  # q = u / sum u is unchanged by the loss


# --- R2 and R3 ---------------------------------------------------------------------------------------------------


def _ancestral(process, denoiser, u, schedule, noise, callback=None, clip=True, memory=False):
    """The ancestral step; with `memory`, each step's prediction of u_0 is averaged with the previous step's
    (what R2 must catch), without it the plain step (what it is checked against)."""
    prev = None
    for k, (t, s) in enumerate(zip(schedule[:-1], schedule[1:])):
        u0_hat = denoiser.predict_u0(u, t, noise.ids).clamp(-1.0, 1.0)
        if memory and prev is not None:
            u0_hat = 0.5 * u0_hat + 0.5 * prev
        prev = u0_hat
        post = process.posterior(t, s)
        u = post.coef_ut.float() * u + post.coef_u0.float() * u0_hat
        if s > schedule[-1]:
            u = u + post.var.sqrt().float() * noise(s)
        if callback is not None:
            callback(StepInfo(done=k + 1, total=len(schedule) - 1, index=s, u=u))
    return u


_with_memory = functools.partial(_ancestral, memory=True)
_without_memory = _ancestral


def _r2(fn, digits):
    p = make_process("vp", SHAPE)
    oracle = OracleDenoiser(p, digits.float())
    prior = torch.randn((8,) + SHAPE, generator=torch.Generator().manual_seed(0))
    run = ReverseRun(prior, prior, [1000, 800, 600, 400, 200, 0], "ancestral")
    return check_r2(p, oracle, run, 0, fn=fn)


def test_r2_fails_for_a_chain_with_memory(digits):
    c = _r2(_with_memory, digits)
    assert c.holds is False and c.figure > 1e-3 and c.kind == "bound" and not c.agrees


@pytest.mark.parametrize("fn", [_without_memory, sample_ancestral])
def test_r2_holds_for_markov_chains(fn, digits):
    c = _r2(fn, digits)
    assert c.holds is True and c.figure <= c.tolerance


def test_r3_fails_for_a_vp_schedule_whose_betas_drop():
    betas = [0.01 * (k + 1) for k in range(10)] + [0.001] * 10  # up to 0.1, then down to 0.001
    p = make_process("vp", SHAPE, {"schedule": "custom", "betas": betas})
    bad = check_r3(p)
    assert bad.holds is False and bad.expected == "holds" and not bad.agrees and bad.details["turning"]
    assert check_r3(make_process("vp", SHAPE)).holds is True


# --- identities --------------------------------------------------------------------------------------------------


def test_identities_are_labelled_and_not_counted(digits):
    vp = make_process("vp", SHAPE)
    f1 = check_f1(vp, forward_trajectory(vp, digits, 16, 0, [0, vp.T]), digits[:4])
    assert f1.kind == "identity" and f1.expected == "holds" and not f1.counts and not counted(f1.to_dict())
    # F2 is no longer an identity for the linear-Gaussian processes: a test, counted
    f2 = check_f2(vp, _traj(vp), digits[:16])
    assert f2.kind == "test" and f2.counts and counted(f2.to_dict())
