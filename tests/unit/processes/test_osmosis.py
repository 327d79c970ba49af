"""Osmosis numerics (SPEC sections 2 and 7) and the `osmosis` forward process."""

import pytest
import torch

from scalespace import ScalespaceError
from scalespace.processes import make_process
from scalespace.processes import osmosis_scheme as os_


def _pair(h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(1, 1, h, w, dtype=torch.float64, generator=g) + 0.5
    v = torch.rand(1, 1, h, w, dtype=torch.float64, generator=g) + 0.2
    return u, v


def test_explicit_keeps_mean_positivity_and_converges_over_1e5_steps():
    u, v = _pair()
    d = os_.drift(v)
    tau = float(d.stable_tau())
    x = u
    for _ in range(100_000):
        x = os_.explicit_step(x, d, tau)
    assert abs(float(x.mean() - u.mean())) < 1e-14
    assert float(x.min()) > 0
    assert float((x - os_.steady_state(u, v)).abs().max()) < 1e-12


def test_stable_step_bound_gives_nonnegative_weights_and_no_more():
    u, v = _pair(5, 6, seed=1)
    d = os_.drift(v)
    tau = float(d.stable_tau())
    assert tau >= 1 / 8 - 1e-15  # never below h^2 / 8 with this drift
    n = 30
    basis = torch.eye(n, dtype=torch.float64).reshape(n, 1, 5, 6)
    step_matrix = lambda t: os_.explicit_step(basis, d, t).reshape(n, n)  # noqa: E731
    assert float(step_matrix(tau).min()) >= -1e-15
    assert float(step_matrix(1.05 * tau).min()) < 0  # the bound is tight
    # the operator itself: non-negative off-diagonals, columns summing to 0 (mass)
    a = os_.apply_operator(basis, d).reshape(n, n)
    off = a - torch.diag(torch.diag(a))
    assert float(off.min()) >= 0
    assert float(a.sum(1).abs().max()) < 1e-14


def test_evolve_never_exceeds_the_bound_and_is_per_image():
    u, v = _pair(8, 8)
    u2, v2 = _pair(8, 8, seed=5)
    d_both = os_.drift(torch.cat([v, v2]))
    both = os_.evolve_explicit(torch.cat([u, u2]), d_both, 3.3)
    alone = os_.evolve_explicit(u2, os_.drift(v2), 3.3)
    assert torch.equal(both[1:], alone)  # a sample's result does not depend on its batch


def test_implicit_step_matches_explicit_and_converges():
    u, v = _pair(8, 8)
    d = os_.drift(v)
    exp = os_.evolve_explicit(u, d, 2.0, safety=0.01)
    imp = os_.evolve_implicit(u, d, 2.0, steps=400)
    assert float((exp - imp).abs().max()) < 5e-3
    far = os_.evolve_implicit(u, d, 1e5, steps=5)
    assert float((far - os_.steady_state(u, v)).abs().max()) < 1e-9
    assert abs(float(far.mean() - u.mean())) < 1e-12


def test_lyapunov_sequences():
    u, v = _pair(8, 8)
    d = os_.drift(v)
    rel = [float(os_.relative_entropy(x, v)) for x in _trajectory(u, d)]
    assert all(b <= a + 1e-15 for a, b in zip(rel, rel[1:]))
    flat = os_.drift(torch.ones_like(v))  # d = 0: homogeneous diffusion
    ent = [float(os_.shannon_entropy(x)) for x in _trajectory(u, flat)]
    assert all(b >= a - 1e-15 for a, b in zip(ent, ent[1:]))


def _trajectory(u, d, steps=50):
    out, x = [u], u
    for _ in range(steps):
        x = os_.evolve_explicit(x, d, 0.5)
        out.append(x)
    return out


def test_guidance_must_be_positive():
    with pytest.raises(ScalespaceError, match="positive"):
        os_.drift(torch.zeros(1, 1, 4, 4))


def test_osmosis_process_offset_mean_and_steady_state():
    p = make_process("osmosis", (1, 8, 8), {"K": 10})
    u0 = torch.rand(3, 1, 8, 8, dtype=torch.float64) * 2 - 1
    for i in (1, 5, 10):
        m = p.marginal_mean(i, u0)
        assert float((m.mean((-2, -1)) - u0.mean((-2, -1))).abs().max()) < 1e-13
    far = make_process("osmosis", (1, 8, 8), {"K": 10, "t_max": 2000.0})
    end = far.marginal_mean(10, u0)
    assert float((end - far.steady_state(u0)).abs().max()) < 1e-9
    # all intermediate A_k u0 at once equal the one-at-a-time marginals
    allk = p.marginal_means_all(u0)
    assert torch.allclose(allk[7], p.marginal_mean(7, u0), atol=1e-14)


def test_osmosis_guidance_shared_or_per_sample():
    shared_p = make_process("osmosis", (1, 8, 8), {"K": 5, "guidance_seed": 3})
    per = make_process("osmosis", (1, 8, 8), {"K": 5, "guidance_seed": 3, "guidance": "per_sample"})
    v_shared = shared_p.guidance(torch.arange(4), 4, torch.float64, "cpu")
    v_per = per.guidance(torch.arange(4), 4, torch.float64, "cpu")
    assert v_shared.shape[0] == 1 and v_per.shape[0] == 4
    assert not torch.equal(v_per[0], v_per[1]) and bool((v_per > 0).all())
    v_again = per.guidance(torch.tensor([1]), 1, torch.float64, "cpu")
    assert torch.equal(v_again[0], v_per[1])  # a sample's guidance depends only on its index
    with pytest.raises(ScalespaceError, match="guidance='shared'"):
        per.marginal_means_all(torch.zeros(2, 1, 8, 8, dtype=torch.float64))
