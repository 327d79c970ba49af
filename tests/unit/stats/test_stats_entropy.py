"""Histogram entropy, Gaussian conditional entropy and Monte Carlo means."""

import json
import math

import numpy as np
import pytest
import torch

from scalespace import ScalespaceError
from scalespace.stats import (
    MeanAccumulator,
    conditional_entropy_gaussian,
    histogram_entropy,
    information_loss_mc,
    marginal_entropy_mc,
)


def test_histogram_entropy_constant_and_uniform():
    bins = 16
    const = torch.full((2, 1, 8, 8), 0.3)
    assert torch.equal(histogram_entropy(const, bins=bins), torch.zeros(2, dtype=torch.float64))
    # every bin centre 4 times: a uniform histogram
    centres = -1 + (torch.arange(bins, dtype=torch.float64) + 0.5) * 2 / bins
    uniform = centres.repeat(4)[torch.randperm(4 * bins)].reshape(1, 1, 8, 8)
    h = histogram_entropy(torch.cat([uniform, const[:1].double()]), bins=bins)
    assert h[0] == pytest.approx(math.log(bins), rel=1e-12)
    assert h[1] == 0


def test_histogram_entropy_edges_and_range():
    # half the pixels out of range below, half exactly at the upper bound: two edge bins, ln 2
    x = torch.tensor([[-5.0, -1.0, 1.0, 1.0]])
    assert float(histogram_entropy(x, bins=8)[0]) == pytest.approx(math.log(2), rel=1e-12)
    y = torch.tensor([[0.0, 0.1, 0.6, 0.9]])
    assert float(histogram_entropy(y, bins=2, range=(0.0, 1.0))[0]) == pytest.approx(math.log(2), rel=1e-12)
    assert float(histogram_entropy(y, bins=1, range=(0.0, 1.0))[0]) == 0


def test_conditional_entropy_gaussian():
    assert conditional_entropy_gaussian(1, 1.0) == pytest.approx(0.5 * math.log(2 * math.pi * math.e))
    assert conditional_entropy_gaussian(100, 0.1) == pytest.approx(50 * math.log(2 * math.pi * math.e * 0.01))
    t = conditional_entropy_gaussian(4, torch.tensor([1.0, 0.5]))
    torch.testing.assert_close(t, torch.tensor([2 * math.log(2 * math.pi * math.e), 2 * math.log(2 * math.pi * math.e / 4)], dtype=torch.float64))


def test_mean_accumulator_merge_and_json():
    g = torch.Generator().manual_seed(0)
    v = -1e4 + torch.randn(1001, generator=g, dtype=torch.float64)
    a = MeanAccumulator().update(v[:400]).update(float(v[400]))
    b = MeanAccumulator.from_dict(json.loads(json.dumps(MeanAccumulator().update(v[401:]).to_dict())))
    m = a.merge(b)
    assert m.count == 1001
    assert m.mean() == pytest.approx(float(v.mean()), rel=1e-15)
    assert m.var() == pytest.approx(float(v.var()), rel=1e-10)
    assert m.stderr() == pytest.approx(float(v.std()) / math.sqrt(1001), rel=1e-10)
    assert m.sum == pytest.approx(float(v.sum()), rel=1e-14)


def test_marginal_entropy_mc_recovers_gaussian_entropy():
    # x ~ N(0, s^2 I_D): H = D/2 ln(2 pi e s^2); log p evaluated exactly at the samples
    d, s, n = 8, 0.7, 4000
    g = torch.Generator().manual_seed(1)
    x = s * torch.randn(n, d, generator=g, dtype=torch.float64)
    log_p = -0.5 * (x**2).sum(1) / s**2 - 0.5 * d * math.log(2 * math.pi * s**2)
    est, se = marginal_entropy_mc(log_p)
    truth = conditional_entropy_gaussian(d, s)
    assert 0 < se < 0.1
    assert abs(est - truth) < 4 * se
    # streaming form agrees with the one-shot form
    acc = MeanAccumulator().update(log_p[:1000]).merge(MeanAccumulator().update(log_p[1000:]))
    est2, se2 = marginal_entropy_mc(acc)
    assert est2 == pytest.approx(est, rel=1e-13) and se2 == pytest.approx(se, rel=1e-9)


def test_information_loss_mc():
    h = np.array([1.0, 2.0, 3.0, 6.0])
    mean, se = information_loss_mc(torch.tensor(h))
    assert mean == pytest.approx(3.0)
    assert se == pytest.approx(h.std(ddof=1) / 2)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: histogram_entropy(torch.empty(0, 4)), "empty batch"),
        (lambda: histogram_entropy(torch.zeros(1, 4), bins=0), "bins"),
        (lambda: histogram_entropy(torch.zeros(1, 4), range=(1.0, -1.0)), "range"),
        (lambda: conditional_entropy_gaussian(3, 0.0), "sigma"),
        (lambda: conditional_entropy_gaussian(0, 1.0), "n_values"),
        (lambda: marginal_entropy_mc(torch.tensor([1.0])), "at least 2"),
        (lambda: marginal_entropy_mc(torch.zeros(3, 2)), "1-D"),
        (lambda: information_loss_mc(torch.tensor([1.0, float("inf")])), "NaN or inf"),
        (lambda: MeanAccumulator().mean(), "no values"),
        (lambda: MeanAccumulator.from_dict({"count": 1}), "format"),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ScalespaceError, match=match):
        call()
