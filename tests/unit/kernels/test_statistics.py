"""Streaming per-value moments, the D x D second moment and grey-value histograms."""

import pytest
import torch

from shared.kernels import histogram, moments, second_moment
from shared.stats.entropy import histogram_entropy

SHAPES = [(3, 1, 8, 8), (50, 3, 7, 9), (17, 33), (1, 5)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("deterministic", [False, True])
def test_pixel_moments(rand, shape, dtype, deterministic):
    x = rand(*shape, dtype=dtype, scale=0.7, shift=3.0)  # a large mean: the centre matters
    c = x.reshape(shape[0], -1).double().mean(0)
    for center in (None, c):
        for rows in (None, 7):  # one split, or several (atomic adds, or ordered partials)
            s, q = moments.pixel_moments_triton(x, center, deterministic=deterministic, rows_per_split=rows)
            rs, rq = moments.pixel_moments_reference(x, center)
            bs, bq = moments.error_bound(x, center)
            assert s.dtype == torch.float64 and torch.isfinite(s).all() and torch.isfinite(q).all()
            assert ((s - rs).abs() <= bs).all() and ((q - rq).abs() <= bq).all()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("deterministic", [False, True])
def test_second_moment(rand, shape, deterministic):
    x = rand(*shape, scale=0.5, shift=1.0)
    c = x.reshape(shape[0], -1).double().mean(0)
    for center in (None, c):
        for rows in (None, 16):
            got = second_moment.second_moment_triton(x, center, deterministic=deterministic, rows_per_split=rows)
            ref = second_moment.second_moment_reference(x, center)
            assert torch.isfinite(got).all() and torch.equal(got, got.T)
            assert ((got - ref).abs() <= second_moment.error_bound(x, center)).all()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("bins,lo,hi", [(64, -1.0, 1.0), (13, -1.0, 0.9), (1, 0.0, 1.0)])
def test_histogram_counts_equal(rand, shape, bins, lo, hi):
    x = rand(*shape, scale=0.8)  # some values fall outside [lo, hi): edge bins
    got = histogram.histogram_triton(x, bins, lo, hi)
    ref = histogram.histogram_reference(x, bins, lo, hi)
    assert torch.equal(got, ref)
    assert (got.sum(1) == x[0].numel()).all()


def test_histogram_matches_histogram_entropy(rand):
    x = rand(6, 1, 9, 9, scale=0.6)
    p = histogram.histogram_triton(x, 64).double() / 81
    h = -torch.special.xlogy(p, p).sum(1)
    assert torch.allclose(h, histogram_entropy(x, bins=64), rtol=0, atol=1e-12)
