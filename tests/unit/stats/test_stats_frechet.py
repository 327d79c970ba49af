"""Fréchet distance, KL to N(0, I) and Gaussian entropy against independent references."""

import math

import numpy as np
import pytest
import torch

from scalespace import ScalespaceError
from scalespace.stats import (
    Moments,
    frechet_distance,
    frechet_from_moments,
    gaussian_entropy,
    kl_to_standard_normal,
    trace_sqrt_product,
)


def _samples(n, d, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ a + shift


def _np_sqrt(s):
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _fd_reference(mu1, s1, mu2, s2):
    # Independent route: tr sqrt(S1^1/2 S2 S1^1/2) = nuclear norm of S2^1/2 S1^1/2 (its singular values).
    nuc = np.linalg.svd(_np_sqrt(s2) @ _np_sqrt(s1), compute_uv=False).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * nuc)


def test_fd_of_a_distribution_with_itself_is_zero():
    m = Moments.from_samples(_samples(500, 20, 0), full=True)
    cov = m.cov()
    tr = float(torch.trace(cov))
    # Unclamped trace term: tr sqrt(S S) must equal tr S to rounding.
    assert abs(trace_sqrt_product(cov, cov) - tr) < 1e-10 * tr
    assert abs(frechet_from_moments(m, m)) < 1e-8 * tr


@pytest.mark.parametrize("c", [0.5, -2.0, 0.1])
def test_fd_of_a_shift_is_squared_shift(c):
    # The trace terms cancel to ~1e-15 * tr S (~16 here), so 1e-9 relative holds while c^2 D >> 1e-5.
    x = _samples(400, 16, 1)
    fd = frechet_from_moments(Moments.from_samples(x, full=True), Moments.from_samples(x + c, full=True))
    assert fd == pytest.approx(c * c * 16, rel=1e-9, abs=0)


def test_fd_symmetric_nonnegative_and_matches_reference():
    for seed in range(4):
        x, y = _samples(200, 12, seed), _samples(150, 12, seed + 10, shift=0.3)
        mx, my = Moments.from_samples(x, full=True), Moments.from_samples(y, full=True)
        fd = frechet_from_moments(mx, my)
        assert fd > 0
        assert fd == pytest.approx(frechet_from_moments(my, mx), rel=1e-9)
        ref = _fd_reference(mx.mean().numpy(), mx.cov().numpy(), my.mean().numpy(), my.cov().numpy())
        assert fd == pytest.approx(ref, rel=1e-9)


def test_fd_rank_deficient_matches_reference():
    # Fewer samples than dimensions: singular covariances, as with small FID sample sets.
    x, y = _samples(6, 10, 3), _samples(8, 10, 4, shift=0.1)
    mx, my = Moments.from_samples(x, full=True), Moments.from_samples(y, full=True)
    ref = _fd_reference(mx.mean().numpy(), mx.cov().numpy(), my.mean().numpy(), my.cov().numpy())
    assert frechet_from_moments(mx, my) == pytest.approx(ref, rel=1e-7)


def test_fd_diagonal_closed_form():
    a, b = np.array([1.0, 4.0, 0.25, 0.0]), np.array([9.0, 1.0, 0.25, 2.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 0.0, 3.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_kl_to_standard_normal():
    assert kl_to_standard_normal(torch.zeros(5), torch.eye(5)) == pytest.approx(0.0, abs=1e-15)
    mu, var = np.array([0.5, -1.0, 0.0]), np.array([2.0, 0.5, 1.5])
    expected = 0.5 * float((var + mu**2 - 1 - np.log(var)).sum())
    assert kl_to_standard_normal(mu, np.diag(var)) == pytest.approx(expected, rel=1e-12)
    assert kl_to_standard_normal(mu, var) == pytest.approx(expected, rel=1e-12)  # variances form


def test_kl_singular_needs_jitter():
    cov = np.diag([1.0, 0.0])
    with pytest.raises(ScalespaceError, match="jitter"):
        kl_to_standard_normal(np.zeros(2), cov)
    # jitter eps turns variances (1, 0) into (1 + eps, eps): KL = 0.5 * sum(v - 1 - ln v)
    eps = 1e-6
    expected = 0.5 * ((1 + eps) + eps - 2 - math.log(1 + eps) - math.log(eps))
    assert kl_to_standard_normal(np.zeros(2), cov, jitter=eps) == pytest.approx(expected, rel=1e-12)


def test_gaussian_entropy():
    var = np.array([0.5, 2.0, 3.0])
    expected = 0.5 * (3 * math.log(2 * math.pi * math.e) + np.log(var).sum())
    assert gaussian_entropy(np.diag(var)) == pytest.approx(expected, rel=1e-12)
    assert gaussian_entropy(var) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4)), "mu2"),
        (lambda: frechet_distance(np.zeros(3), np.eye(4), np.zeros(3), np.eye(3)), "cov1"),
        (lambda: frechet_distance(np.zeros(0), np.eye(0), np.zeros(0), np.eye(0)), "non-empty"),
        (lambda: frechet_distance(np.zeros(2), np.full((2, 2), np.inf), np.zeros(2), np.eye(2)), "NaN or inf"),
        (lambda: frechet_from_moments(Moments(dim=2), Moments(dim=2, full=True)), "full=True"),
        (lambda: kl_to_standard_normal(np.zeros(3), np.eye(2)), "mu"),
        (lambda: kl_to_standard_normal(np.zeros(2), np.eye(2), jitter=-1.0), "jitter"),
        (lambda: gaussian_entropy(np.ones((2, 3))), "cov"),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ScalespaceError, match=match):
        call()


def test_kl_gaussians_matches_the_standard_normal_case_and_the_diagonal_form():
    import torch as _t

    from scalespace.stats.frechet import kl_gaussians, kl_to_standard_normal

    g = _t.Generator().manual_seed(1)
    a = _t.randn(5, 5, generator=g, dtype=_t.float64)
    cov = a @ a.T + 0.5 * _t.eye(5, dtype=_t.float64)
    mu = _t.randn(5, generator=g, dtype=_t.float64)
    zero, eye = _t.zeros(5, dtype=_t.float64), _t.eye(5, dtype=_t.float64)
    assert abs(kl_gaussians(mu, cov, zero, eye) - kl_to_standard_normal(mu, cov)) < 1e-12
    assert abs(kl_gaussians(mu, cov, mu, cov)) < 1e-12
    v1, v2 = _t.tensor([1.0, 2.0], dtype=_t.float64), _t.tensor([3.0, 0.5], dtype=_t.float64)
    m1, m2 = _t.tensor([0.0, 1.0], dtype=_t.float64), _t.tensor([1.0, -1.0], dtype=_t.float64)
    want = sum(0.5 * (v1[i] / v2[i] + (m2[i] - m1[i]) ** 2 / v2[i] - 1 + _t.log(v2[i] / v1[i])) for i in range(2))
    assert abs(kl_gaussians(m1, v1, m2, v2) - float(want)) < 1e-12
    assert abs(kl_gaussians(m1, _t.diag(v1), m2, _t.diag(v2)) - float(want)) < 1e-12
