"""Bias-corrected bootstrap intervals, the Student-t interval over seeds, and the Wishart log-det correction."""

import math

import pytest
import torch

from scalespace import ScalespaceError
from scalespace.stats.frechet import FrechetReference, logdet_bias, moment_matched
from scalespace.stats.moments import Moments
from scalespace.stats.quality import bootstrap_interval, student_t_quantile, t_interval


def _fd_case():
    """FD of 8 samples in 16 dims: resamples with duplicates inflate FD beyond its own spread."""
    g = torch.Generator().manual_seed(0)
    ref = Moments.from_samples(torch.randn(400, 16, generator=g, dtype=torch.float64), full=True)
    x = torch.randn(8, 16, generator=g, dtype=torch.float64) * 1.2 + 0.3
    return x, FrechetReference(ref).of_samples


def test_old_basic_interval_excludes_the_fd_and_the_debiased_bca_contains_it():
    x, stat = _fd_case()
    old = bootstrap_interval(x, stat, n_boot=100, seed=0, method="basic")
    theta = old["estimate"]
    assert old["high"] < theta  # the former per-seed interval (basic): [7.3, 20.7] for 22.0
    assert bootstrap_interval(x, stat, n_boot=100, seed=0, method="percentile")["low"] > theta
    new = bootstrap_interval(x, stat, n_boot=100, seed=0, method="bca", debias=True)
    assert new["low"] < theta < new["high"]  # [16.4, 29.8]
    assert new["bias"] == pytest.approx(old["bias"]) and new["bias"] > 0.3 * theta
    assert abs(new["z0"]) < 1.0 and new["acceleration"] is not None


def test_bca_covers_the_mean_of_normal_data_about_95_percent():
    g = torch.Generator().manual_seed(11)
    reps, hits = 200, 0
    for r in range(reps):
        v = torch.randn(100, generator=g, dtype=torch.float64) + 3.0
        b = bootstrap_interval(v, n_boot=400, seed=r)
        assert b["low"] < b["estimate"] < b["high"]
        hits += b["low"] <= 3.0 <= b["high"]
    # binomial sd at p = 0.95 over 200: 0.0154; 3 sd either side
    assert 0.95 - 3 * 0.0154 <= hits / reps <= 0.95 + 3 * 0.0154, hits


def test_bca_acceleration_from_the_jackknife_of_a_skewed_statistic():
    # the test's own generator: data drawn from the global one would depend on the tests run before it
    g = torch.Generator().manual_seed(2)
    v = -torch.log(torch.rand(60, generator=g, dtype=torch.float64))  # Exponential(1)
    # 4,000 resamples: at 300 the endpoints' Monte Carlo noise flips the asymmetry for 2 data sets in 40
    b = bootstrap_interval(v, n_boot=4000, seed=0)
    # the mean of exponential data is right-skewed: positive acceleration, interval longer above the estimate
    assert b["acceleration"] > 0
    assert b["high"] - b["estimate"] > b["estimate"] - b["low"] > 0
    with pytest.raises(ScalespaceError, match="method"):
        bootstrap_interval(v, method="bac")


def test_t_interval_against_the_t_quantiles():
    # t_{0.975, k-1} to 12 digits (independently: scipy.stats.t.ppf, tables)
    known = {1: 12.706204736174698, 2: 4.302652729749464, 4: 2.7764451051977934, 29: 2.045229642132703}
    for dof, q in known.items():
        assert student_t_quantile(0.975, dof) == pytest.approx(q, rel=1e-9)
        assert student_t_quantile(0.025, dof) == pytest.approx(-q, rel=1e-9)
    try:
        from scipy.stats import t as student_t
    except ImportError:  # pragma: no cover - scipy is optional
        student_t = None
    if student_t is not None:
        for dof in (1, 2, 3, 7.5, 40):
            for p in (0.6, 0.9, 0.975, 0.995):
                assert student_t_quantile(p, dof) == pytest.approx(student_t.ppf(p, dof), rel=1e-9)
    vals = [15.61026581251517, 16.436640249889294, 14.9]
    m, s = sum(vals) / 3, math.sqrt(sum((v - sum(vals) / 3) ** 2 for v in vals) / 2)
    lo, hi = t_interval(vals)
    assert lo == pytest.approx(m - 4.302652729749464 * s / math.sqrt(3), rel=1e-12)
    assert hi == pytest.approx(m + 4.302652729749464 * s / math.sqrt(3), rel=1e-12)
    assert t_interval(vals, alpha=0.5)[1] < hi  # narrower at lower confidence
    with pytest.raises(ScalespaceError, match="at least 2"):
        t_interval([1.0])


def test_logdet_bias_matches_the_wishart_expectation():
    # E ln det S = ln det Sigma + sum_i psi((n - i)/2) + d ln(2/(n-1)): for d = 1 it is E ln(chi2_{n-1}/(n-1))
    n = 10
    assert logdet_bias(1, n) == pytest.approx(float(torch.special.digamma(torch.tensor(4.5, dtype=torch.float64))) + math.log(2 / 9))
    assert logdet_bias(3, n, full=False) == pytest.approx(3 * logdet_bias(1, n))
    assert logdet_bias(64, 256) == pytest.approx(-8.947, abs=1e-3)
    # Monte Carlo: a known Sigma, d = 6, n = 40, 3000 draws (sd of ln det S about 0.6, SE 0.011)
    g = torch.Generator().manual_seed(4)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    sigma = a @ a.T / 6 + 0.5 * torch.eye(6, dtype=torch.float64)
    chol = torch.linalg.cholesky(sigma)
    x = torch.randn(3000, 40, 6, generator=g, dtype=torch.float64) @ chol.T
    xc = x - x.mean(1, keepdim=True)
    s = xc.transpose(1, 2) @ xc / 39
    excess = float(torch.linalg.slogdet(s)[1].mean()) - float(torch.linalg.slogdet(sigma)[1])
    assert excess == pytest.approx(logdet_bias(6, 40), abs=0.05)
    with pytest.raises(ScalespaceError, match="singular"):
        logdet_bias(64, 64)


def test_moment_matched_kl_and_entropy_without_the_finite_sample_bias():
    g = torch.Generator().manual_seed(1)
    kls, old = [], []
    for _ in range(10):
        m = Moments.from_samples(torch.randn(256, 64, generator=g, dtype=torch.float64), full=True)
        _, kl = moment_matched(m)
        lam = torch.linalg.eigvalsh(m.cov())
        old.append(0.5 * float(lam.sum() + (m.mean() ** 2).sum() - 64 - lam.log().sum()))
        kls.append(kl)
        assert abs(kl) < 0.5
    assert sum(old) / 10 == pytest.approx(4.5, abs=0.3)  # the plug-in figure the trajectory used to show
    assert abs(sum(kls) / 10) < 0.1  # the truth: KL(N(0, I) || N(0, I)) = 0
    # entropy of a known Sigma: 0.5 (d ln(2 pi e) + ln det Sigma), averaged over draws
    a = torch.randn(32, 32, generator=g, dtype=torch.float64)
    sigma = a @ a.T / 32 + 0.2 * torch.eye(32, dtype=torch.float64)
    truth = 0.5 * (32 * math.log(2 * math.pi * math.e) + float(torch.linalg.slogdet(sigma)[1]))
    chol = torch.linalg.cholesky(sigma)
    ents = [moment_matched(Moments.from_samples(torch.randn(128, 32, generator=g, dtype=torch.float64) @ chol.T, full=True))[0]
            for _ in range(20)]
    assert sum(ents) / 20 == pytest.approx(truth, abs=0.1)
    # diagonal form: per-pixel variances, chi-square correction
    dm = Moments.from_samples(torch.randn(64, 200, generator=g, dtype=torch.float64) * 2.0, full=False)
    e, kl = moment_matched(dm)
    assert e == pytest.approx(100 * math.log(2 * math.pi * math.e * 4.0), abs=1.0)
    assert kl == pytest.approx(100 * (4.0 - 1 - math.log(4.0)), abs=8.0)
    # n <= d: singular, no figures
    assert moment_matched(Moments.from_samples(torch.randn(20, 30, generator=g, dtype=torch.float64), full=True)) == (None, None)
