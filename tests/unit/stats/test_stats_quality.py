"""FID/KID, bootstrap intervals, nearest neighbours and memorisation."""

import json

import pytest
import torch

from scalespace import ScalespaceError
from scalespace.stats import (
    Moments,
    bootstrap_ci,
    fid,
    fid_from_features,
    fid_statistic,
    get_extractor,
    kid,
    memorisation_ratio,
    nearest_neighbour_distance,
    reference_statistics,
)


def _gauss(n, d, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


def _images(b, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, 1, 8, 8, generator=g) * 1.6 - 0.8 + shift).clamp(-1, 1)


def test_kid_near_zero_same_distribution_and_larger_when_shifted():
    x, y, z = _gauss(300, 16, 0), _gauss(300, 16, 1), _gauss(300, 16, 2, shift=1.0)
    same_mean, same_std = kid(x, y, subset_size=100, n_subsets=50)
    shifted_mean, _ = kid(x, z, subset_size=100, n_subsets=50)
    assert abs(same_mean) < 0.05 and same_std > 0
    assert shifted_mean > 0.5 and shifted_mean > 20 * abs(same_mean)
    assert kid(x, y, subset_size=100, n_subsets=5, seed=3) == kid(x, y, subset_size=100, n_subsets=5, seed=3)


def test_fid_from_features_warns_and_adds_kid_below_2048():
    x, y = _gauss(200, 4, 0), _gauss(300, 4, 1, shift=0.5)
    out = fid_from_features(x, y, kid_subset_size=100, kid_subsets=10)
    assert out["n_samples"] == 200 and out["n_reference"] == 300
    assert out["fid"] == pytest.approx(4 * 0.25, rel=0.5)  # mean shift 0.5 in 4 dims, plus noise
    assert "2048" in out["warning"] and out["kid_mean"] > 0 and out["kid_std"] >= 0
    big = fid_from_features(_gauss(2100, 4, 2), y)
    assert "warning" not in big and big["kid_mean"] is None
    json.dumps(out)  # the result is JSON-ready


def test_fid_with_cached_reference_equals_fid_with_images():
    ex = get_extractor("random-conv")
    samples, ref = _images(40, 0), _images(50, 1, shift=0.2)
    direct = fid(samples, ref, ex)
    stats = reference_statistics([ref[:20], ref[20:]], ex, batch_size=7)
    assert stats.meta == {"extractor": "random-conv", "digest": ex.digest}
    cached = Moments.from_dict(json.loads(json.dumps(stats.to_dict())))
    via_cache = fid(samples, cached, ex)
    assert direct["fid"] > 0
    # float32 conv features differ at ~1e-7 between batchings; the statistics path itself is exact
    assert via_cache["fid"] == pytest.approx(direct["fid"], rel=1e-6)
    assert via_cache["kid_mean"] is None and "KID skipped" in via_cache["warning"]
    with pytest.raises(ScalespaceError, match="digest"):
        fid(samples, cached, get_extractor("random-conv", seed=1))


def test_fid_inception_of_a_set_with_itself_is_zero():
    x = _images(2, 5)
    out = fid(x, x, "inception", batch_size=2)
    assert out["extractor"] == "inception" and out["n_samples"] == 2
    assert out["fid"] == pytest.approx(0.0, abs=1e-6)


def test_bootstrap_ci_contains_point_estimate():
    v = _gauss(400, 1, 0)[:, 0] + 3.0
    lo, hi = bootstrap_ci(v, n_boot=300, seed=1)
    assert lo < float(v.mean()) < hi and hi - lo < 0.5
    assert bootstrap_ci(v, n_boot=300, seed=1) == (lo, hi)
    narrow = bootstrap_ci(v, n_boot=300, seed=1, alpha=0.5)
    assert lo < narrow[0] < narrow[1] < hi
    ref = Moments.from_samples(_gauss(1000, 3, 1, shift=0.5), full=True)
    f = _gauss(400, 3, 2)
    point = fid_statistic(ref)(f)
    for method in ("percentile", "basic"):
        flo, fhi = bootstrap_ci(f, fid_statistic(ref), n_boot=100, seed=0, method=method)
        assert flo < point < fhi


def test_nearest_neighbour_finds_exact_copy():
    train = _gauss(50, 12, 0)
    samples = torch.stack([train[17], train[3] + 1e-3, _gauss(1, 12, 9)[0]])
    for t in (train, [train[:20], train[20:]]):
        dist, idx = nearest_neighbour_distance(samples, t, chunk=7)
        assert dist[0] == 0 and idx[0] == 17
        assert idx[1] == 3 and dist[1] == pytest.approx(1e-3 * 12**0.5, rel=1e-6)
        brute = (samples[:, None, :] - train[None, :, :]).norm(dim=2)
        assert torch.equal(idx, brute.argmin(dim=1))
        torch.testing.assert_close(dist, brute.min(dim=1).values, rtol=1e-10, atol=1e-12)


def test_memorisation_ratio():
    train, heldout = _gauss(200, 8, 0), _gauss(50, 8, 1)
    assert memorisation_ratio(train[:30] + 1e-9, train, heldout) < 1e-6  # copies
    fresh = memorisation_ratio(_gauss(50, 8, 2), train, heldout, chunk=64)
    assert 0.7 < fresh < 1.4
    with pytest.raises(ScalespaceError, match="heldout"):
        memorisation_ratio(_gauss(5, 8, 3), train, train[:10])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: fid_from_features(_gauss(10, 3, 0), _gauss(10, 4, 1)), "dim 4"),
        (lambda: fid_from_features(_gauss(1, 3, 0), _gauss(10, 3, 1)), "at least 2 samples"),
        (lambda: fid(torch.empty(0, 1, 8, 8), _images(3, 0), "pixels"), "non-empty"),
        (lambda: fid(_images(3, 0), _images(3, 1), "inceptoin"), "unknown name 'inceptoin'"),
        (lambda: kid(_gauss(10, 3, 0), _gauss(10, 2, 1)), "features2"),
        (lambda: kid(_gauss(1, 3, 0), _gauss(10, 3, 1)), "too small"),
        (lambda: bootstrap_ci(_gauss(10, 1, 0), alpha=1.5), "alpha"),
        (lambda: bootstrap_ci(_gauss(10, 1, 0), method="bac"), "method"),
        (lambda: nearest_neighbour_distance(_gauss(3, 4, 0), _gauss(5, 5, 1)), "train"),
        (lambda: nearest_neighbour_distance(_gauss(3, 4, 0), []), "empty"),
        (lambda: reference_statistics([], "pixels"), "no batches"),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ScalespaceError, match=match):
        call()
