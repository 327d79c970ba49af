"""The MMD two-sample permutation test: calibrated on equal distributions, powerful on shifted ones."""

import pytest
import torch

from scalespace import ScalespaceError
from scalespace.stats.two_sample import mmd_permutation_test


def _gauss(n, d, seed, shift=0.0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * scale + shift


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_same_distribution_is_not_rejected(seed):
    x, y = _gauss(100, 16, 10 + seed), _gauss(120, 16, 20 + seed)
    r = mmd_permutation_test(x, y, permutations=200, seed=seed)
    assert r.p_value > 0.05
    assert abs(r.statistic) < 0.01
    assert (r.n_x, r.n_y, r.permutations) == (100, 120, 200)


@pytest.mark.parametrize("seed", [0, 1])
def test_shifted_distribution_gets_the_smallest_p_value(seed):
    x, y = _gauss(100, 16, 10 + seed), _gauss(100, 16, 20 + seed, shift=0.5)
    r = mmd_permutation_test(x, y, permutations=200, seed=seed)
    assert r.p_value == pytest.approx(1 / 201)
    assert r.rejects(0.01) and r.statistic > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_mean_and_covariance_but_other_shape_is_rejected(seed):
    # +-1 in each coordinate blurred a little, rescaled: mean 0 and covariance I, like the standard Gaussian
    g = torch.Generator().manual_seed(50 + seed)
    signs = torch.randint(0, 2, (150, 2), generator=g, dtype=torch.float64) * 2 - 1
    x = signs * 0.99**0.5 + 0.1 * torch.randn(150, 2, generator=g, dtype=torch.float64)
    r = mmd_permutation_test(x, _gauss(150, 2, 60 + seed), permutations=200, seed=seed, scales=(0.5,))
    assert r.rejects(0.01)


def test_statistic_is_symmetric_and_p_value_reproducible():
    x, y = _gauss(40, 8, 1), _gauss(50, 8, 2, shift=0.2)
    a = mmd_permutation_test(x, y, permutations=100, seed=3)
    b = mmd_permutation_test(y, x, permutations=100, seed=3)
    assert a.statistic == pytest.approx(b.statistic, rel=1e-12, abs=1e-15)
    assert a.bandwidth == pytest.approx(b.bandwidth)
    assert mmd_permutation_test(x, y, permutations=100, seed=3) == a


def test_unbiased_statistic_matches_a_direct_computation():
    x, y = _gauss(7, 3, 1), _gauss(9, 3, 2, shift=0.3)
    h = 1.3
    k = lambda a, b: torch.exp(-torch.cdist(a, b) ** 2 / (2 * h * h))  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    want = ((kxx.sum() - kxx.trace()) / (7 * 6) + (kyy.sum() - kyy.trace()) / (9 * 8) - 2 * kxy.mean()).item()
    r = mmd_permutation_test(x, y, permutations=10, seed=0, bandwidth=h)
    assert r.statistic == pytest.approx(want, rel=1e-10)
    assert r.bandwidth == h


def test_images_are_flattened_and_identical_points_give_p_one():
    x = torch.zeros(5, 1, 4, 4)
    r = mmd_permutation_test(x, x.clone(), permutations=20, seed=0)
    assert (r.statistic, r.p_value) == (0.0, 1.0)


@pytest.mark.parametrize("x, y, kw, match", [
    (torch.zeros(10, 3), torch.zeros(10, 4), {}, "values per sample"),
    (torch.zeros(1, 3), torch.zeros(10, 3), {}, "at least 2 samples"),
    (torch.zeros(10, 3), torch.zeros(1, 3), {}, "at least 2 samples"),
    (torch.zeros(0, 3), torch.zeros(10, 3), {}, "empty batch"),
    (torch.zeros(10, 3), torch.zeros(10, 3), {"permutations": 0}, "permutations"),
    (torch.zeros(10, 3), torch.zeros(10, 3), {"bandwidth": -1.0}, "bandwidth"),
    (torch.zeros(10, 3), torch.zeros(10, 3), {"scales": ()}, "scales"),
    (torch.full((10, 3), float("nan")), torch.zeros(10, 3), {}, "NaN"),
])
def test_bad_inputs_raise_clear_errors(x, y, kw, match):
    kw = {"permutations": 10, "seed": 0, **kw}
    with pytest.raises(ScalespaceError, match=match):
        mmd_permutation_test(x, y, **kw)


def test_fast_for_512_images_of_784_values():
    import time

    x, y = _gauss(512, 784, 1), _gauss(512, 784, 2)
    t0 = time.perf_counter()
    mmd_permutation_test(x, y, permutations=500, seed=0)
    assert time.perf_counter() - t0 < 20  # about half a second on one CPU core
