"""Transitions and posteriors against Monte Carlo in float64; Chapman-Kolmogorov; steady states."""

import pytest
import torch

from scalespace.processes import make_process
from scalespace.processes.dct import dct2

SHAPE = (1, 4, 4)
SMALL = {
    "vp": {"T": 20, "beta_end": 0.2},
    "ve": {"T": 20, "sigma_max": 3.0},
    "blurring": {"T": 20, "sigma_blur_max": 3.0},
    "heat": {"K": 20, "sigma_blur_max": 3.0, "sigma": 0.1},
}


@pytest.mark.parametrize("name", list(SMALL))
def test_transition_and_posterior_match_monte_carlo(name):
    p = make_process(name, SHAPE, SMALL[name])
    g = torch.Generator().manual_seed(0)
    n = 200_000
    u0 = torch.rand(SHAPE, dtype=torch.float64, generator=g) * 2 - 1
    s, t = 6, 13
    # chain: u_s from the marginal, u_t from the transition; both in the DCT basis
    c0 = dct2(u0)
    a_s, sig_s = p.alpha(s), p.sigma(s)
    a_ts, s2_ts = p.transition(s, t)
    cs = a_s * c0 + sig_s * torch.randn((n,) + SHAPE, dtype=torch.float64, generator=g)
    ct = a_ts * cs + s2_ts.clamp_min(0).sqrt() * torch.randn((n,) + SHAPE, dtype=torch.float64, generator=g)
    # the composed chain has the closed-form marginal at t
    tol = 6 / n**0.5
    assert torch.allclose(ct.mean(0), p.alpha(t) * c0, atol=tol * max(p.sigma(t), 1e-3) + 1e-12)
    assert torch.allclose(ct.var(0), torch.full(SHAPE, p.sigma(t) ** 2, dtype=torch.float64), rtol=0.02)
    # posterior: regress u_s on u_t per coefficient (u_0 fixed)
    post = p.posterior(t, s)
    dct_t = ct - ct.mean(0)
    dcs = cs - cs.mean(0)
    slope = (dct_t * dcs).mean(0) / dct_t.var(0)
    resid = (dcs - slope * dct_t).var(0)
    assert torch.allclose(slope, post.coef_ut.expand(SHAPE), atol=0.02)
    assert torch.allclose(resid, post.var.expand(SHAPE), rtol=0.03, atol=1e-6)
    mean_pred = post.coef_ut * ct.mean(0) + post.coef_u0 * c0
    assert torch.allclose(mean_pred, cs.mean(0), atol=tol * 2 + 1e-9)


@pytest.mark.parametrize("name", list(SMALL))
def test_chapman_kolmogorov(name):
    p = make_process(name, SHAPE, SMALL[name])
    for s, r, t in [(0, 5, 17), (3, 4, 20), (1, 10, 11)]:
        a_sr, v_sr = p.transition(s, r)
        a_rt, v_rt = p.transition(r, t)
        a_st, v_st = p.transition(s, t)
        assert torch.allclose(a_rt * a_sr, a_st, rtol=1e-12)
        assert torch.allclose(a_rt**2 * v_sr + v_rt, v_st, rtol=1e-10, atol=1e-14)


def test_posterior_is_well_defined_at_the_edges():
    vp = make_process("vp", SHAPE)
    post = vp.posterior(1, 0)  # sigma_0 = 0: the step returns A_0 u0_hat
    assert float(post.var) == 0 and float(post.coef_ut) == 0 and float(post.coef_u0) == 1
    heat = make_process("heat", SHAPE)
    post = heat.posterior(10, 9)  # the DC mode is never damped: u_s = u_t there
    assert float(post.coef_ut[0, 0]) == pytest.approx(1.0) and float(post.var[0, 0]) == 0


def test_steady_states():
    vp = make_process("vp", (1, 8, 8))
    assert float(vp.alpha(vp.T)) ** 2 == pytest.approx(4.04e-5, rel=1e-2) and vp.sigma(vp.T) > 0.9999
    b = make_process("blurring", (1, 8, 8))
    assert float(b.alpha(b.T).max()) < 0.0068 and b.sigma(b.T) > 0.9999
    heat = make_process("heat", (1, 8, 8))
    a = heat.alpha(heat.T)
    assert float(a[0, 0]) == 1.0 and float(a.flatten()[1:].max()) < 1e-10  # only the mean colour survives
    ve = make_process("ve", (1, 8, 8))
    assert float(ve.alpha(ve.T)) == 1.0 and ve.sigma(ve.T) == pytest.approx(ve.sigma_max)


@pytest.mark.parametrize("name", ["vp", "ve", "blurring", "heat"])
def test_forward_sampling_matches_marginal(name):
    p = make_process(name, SHAPE, SMALL[name])
    u0 = torch.rand((1,) + SHAPE, dtype=torch.float64) * 2 - 1
    z = torch.randn((50_000,) + SHAPE, dtype=torch.float64)
    ut = p.sample_marginal(12, u0.expand_as(z), z)
    assert torch.allclose(ut.mean(0), p.marginal_mean(12, u0)[0], atol=0.05 * max(p.sigma(12), 0.01))
    assert float(ut.std(0).mean()) == pytest.approx(p.sigma(12), rel=0.02)
