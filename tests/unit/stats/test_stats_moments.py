"""Moments: streaming, exact merging, JSON round trip, input errors."""

import json

import numpy as np
import pytest
import torch

from scalespace import ScalespaceError
from scalespace.stats import Moments, batch_stats, frechet_from_moments, merge_all


def _data(n=300, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    # A large offset makes naive sum-of-squares variance lose digits; Chan's update must not.
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return 1e3 + torch.randn(n, d, generator=g, dtype=torch.float64) @ a


def test_single_pass_matches_numpy():
    x = _data()
    m = Moments(dim=6, full=True).update(x[:7]).update(x[7:])
    xn = x.numpy()
    np.testing.assert_allclose(m.mean().numpy(), xn.mean(0), rtol=1e-13)
    np.testing.assert_allclose(m.var().numpy(), xn.var(0), rtol=1e-10)
    np.testing.assert_allclose(m.var(unbiased=True).numpy(), xn.var(0, ddof=1), rtol=1e-10)
    np.testing.assert_allclose(m.cov().numpy(), np.cov(xn, rowvar=False), rtol=1e-10, atol=1e-10)
    assert m.global_mean() == pytest.approx(xn.mean(), rel=1e-13)
    assert m.global_var() == pytest.approx(xn.var(), rel=1e-10)
    assert m.global_var(unbiased=True) == pytest.approx(xn.var(ddof=1), rel=1e-10)
    np.testing.assert_allclose(m.sum.numpy(), xn.sum(0), rtol=1e-13)


def test_merge_equals_all_at_once():
    x = _data(n=301)
    whole = Moments.from_samples(x, full=True)
    a = Moments(dim=6, full=True)
    for i in range(0, 120, 13):  # uneven batches, including a 1-sample tail
        a.update(x[i : min(i + 13, 120)])
    b = Moments(dim=6, full=True).update(x[120:300]).update(x[300:])
    merged = a.merge(b)
    assert merged.count == whole.count == 301
    torch.testing.assert_close(merged.mean(), whole.mean(), rtol=1e-14, atol=0)
    torch.testing.assert_close(merged.var(), whole.var(), rtol=1e-11, atol=0)
    torch.testing.assert_close(merged.cov(), whole.cov(), rtol=1e-11, atol=1e-11)
    assert merged.global_var() == pytest.approx(whole.global_var(), rel=1e-11)
    # merge leaves its inputs alone and is order-independent
    assert a.count == 120
    torch.testing.assert_close(b.merge(a).cov(), merged.cov(), rtol=1e-11, atol=1e-11)
    other = Moments.from_samples(_data(seed=1), full=True)
    assert frechet_from_moments(merged, other) == pytest.approx(frechet_from_moments(whole, other), rel=1e-9)
    assert merge_all([a, b]).count == 301


def test_merge_with_empty_is_identity():
    x = _data(n=20)
    m = Moments.from_samples(x)
    e = Moments(dim=6)
    assert torch.equal(m.merge(e).var(), m.var())
    assert torch.equal(e.merge(m).mean(), m.mean())


def test_json_round_trip_is_exact():
    m = Moments.from_samples(_data(n=50), full=True, meta={"extractor": "pixels"})
    back = Moments.from_dict(json.loads(json.dumps(m.to_dict())))
    assert back.count == m.count and back.full and back.meta == {"extractor": "pixels"}
    assert torch.equal(back.mean(), m.mean())
    assert torch.equal(back.m2, m.m2)
    assert torch.equal(back.cov(), m.cov())
    diag = Moments.from_samples(_data(n=5))
    assert Moments.from_dict(json.loads(json.dumps(diag.to_dict()))).comoment is None


def test_update_flattens_images():
    x = torch.randn(10, 1, 4, 4)
    m = Moments(dim=16).update(x)
    torch.testing.assert_close(m.mean(), x.reshape(10, -1).mean(0).double(), rtol=1e-6, atol=1e-7)


def test_batch_stats():
    x = torch.randn(9, 3, 5, 5, dtype=torch.float64)
    s = batch_stats(x)
    assert s.mean.shape == (3, 5, 5)
    torch.testing.assert_close(s.var, x.var(0, correction=0))
    torch.testing.assert_close(batch_stats(x, unbiased=True).var, x.var(0))
    assert s.global_mean == pytest.approx(float(x.mean()))
    assert s.global_var == pytest.approx(float(x.var(correction=0)))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: Moments(dim=3).update(torch.empty(0, 3)), "empty batch"),
        (lambda: Moments(dim=3).update(torch.zeros(2, 4)), "dim=3"),
        (lambda: Moments(dim=3).update(torch.tensor([[0.0, float("nan"), 1.0]])), "NaN"),
        (lambda: Moments(dim=3).mean(), "at least 1"),
        (lambda: Moments.from_samples(torch.zeros(5, 3)).cov(), "full=True"),
        (lambda: Moments.from_samples(torch.zeros(1, 3), full=True).cov(), "at least 2"),
        (lambda: Moments(dim=3).merge(Moments(dim=4)), "dim/full"),
        (lambda: Moments(dim=3, meta={"a": "1"}).merge(Moments(dim=3)), "meta"),
        (lambda: Moments.from_dict({"format": "nope"}), "format"),
        (lambda: Moments.from_dict({**Moments(dim=2).to_dict(), "mean": [0.0]}), "length dim=2"),
        (lambda: Moments(dim=0), "dim"),
        (lambda: merge_all([]), "nothing to merge"),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ScalespaceError, match=match):
        call()
