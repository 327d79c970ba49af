"""Streaming per-value moments, the D x D second moment and grey-value histograms."""

import pytest
import torch

from scalespace.kernels import histogram, moments, second_moment
from scalespace.stats.entropy import histogram_entropy

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


# --- the statistics in shared/stats run these kernels where the dispatch picks Triton ------------


@pytest.fixture
def kernel_calls(monkeypatch):
    """Count the calls of each statistics kernel wrapper (they still run)."""
    calls = {"moments": 0, "second_moment": 0, "histogram": 0}

    def spy(mod, name, key):
        real = getattr(mod, name)

        def wrapped(*a, **k):
            calls[key] += 1
            return real(*a, **k)

        monkeypatch.setattr(mod, name, wrapped)

    spy(moments, "pixel_moments_triton", "moments")
    spy(second_moment, "second_moment_triton", "second_moment")
    spy(histogram, "histogram_triton", "histogram")
    return calls


@pytest.mark.parametrize("deterministic", [False, True])
def test_moments_update_uses_the_kernels(rand, kernel_calls, deterministic):
    from scalespace.kernels import dispatch
    from scalespace.stats.moments import Moments

    batches = [rand(5, 1, 4, 5, scale=0.5, shift=2.0), rand(9, 1, 4, 5, scale=0.5, shift=2.0)]
    with dispatch.override(kernels="reference"):
        ref = Moments(20, full=True)
        for b in batches:
            ref.update(b)
    assert kernel_calls == {"moments": 0, "second_moment": 0, "histogram": 0}
    with dispatch.override(kernels="triton", deterministic=deterministic):
        got = Moments(20, full=True)
        for b in batches:
            got.update(b)
    assert kernel_calls["moments"] == 4 and kernel_calls["second_moment"] == 2
    assert got.count == ref.count == 14
    # float64 accumulation of a few float32 inputs: agreement to a few float64 ulps of the values
    assert torch.allclose(got.center, ref.center, rtol=0, atol=1e-13)
    assert torch.allclose(got.m2, ref.m2, rtol=0, atol=1e-12)
    assert torch.allclose(got.comoment, ref.comoment, rtol=0, atol=1e-12)
    assert torch.allclose(got.cov(), torch.cov(torch.cat(batches).reshape(14, -1).double().T), rtol=0, atol=1e-12)


def test_histogram_entropy_and_trajectory_moments_use_the_kernels(rand, kernel_calls):
    from scalespace.kernels import dispatch
    from scalespace.sampling.pipeline import TrajectoryMoments

    x = rand(4, 1, 6, 7, scale=0.6)
    ref_h = histogram_entropy(x, bins=16)
    ref_t = TrajectoryMoments()
    ref_t.add(3, x)
    with dispatch.override(kernels="triton"):
        got_h = histogram_entropy(x, bins=16)
        got_t = TrajectoryMoments()
        got_t.add(3, x)
    assert kernel_calls["histogram"] == 1 and kernel_calls["moments"] == 1
    assert torch.equal(got_h, ref_h)  # exact integer counts, so the same entropies
    assert got_t.count == ref_t.count
    assert got_t.total[3] == pytest.approx(ref_t.total[3], abs=1e-12)
    assert got_t.total_sq[3] == pytest.approx(ref_t.total_sq[3], rel=1e-14)
