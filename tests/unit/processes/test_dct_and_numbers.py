"""SPEC section 7 numbers and the DCT."""

import math

import pytest
import torch

from scalespace.processes import make_process
from scalespace.processes.dct import dct2, dct_matrix, idct2, laplacian_eigenvalues


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-13), (torch.float32, 1e-5)])
@pytest.mark.parametrize("h,w", [(8, 8), (7, 12), (28, 28)])
def test_dct_is_orthonormal_and_inverts(dtype, tol, h, w):
    c = dct_matrix(h, dtype)
    assert torch.allclose(c @ c.T, torch.eye(h, dtype=dtype), atol=tol)
    u = torch.randn(3, 2, h, w, dtype=dtype)
    assert torch.allclose(idct2(dct2(u)), u, atol=tol * 10)
    assert torch.allclose(dct2(u).norm(), u.norm(), rtol=tol * 10)


def test_dct_diagonalises_neumann_heat_flow():
    # A constant image is the DC mode alone; lambda(0, 0) = 0 and lambda grows with frequency.
    u = torch.full((1, 1, 6, 9), 0.7, dtype=torch.float64)
    c = dct2(u)
    assert abs(float(c[..., 0, 0]) - 0.7 * math.sqrt(54)) < 1e-12
    assert float(c.abs().flatten()[1:].max()) < 1e-12
    lam = laplacian_eigenvalues(6, 9)
    assert lam[0, 0] == 0 and abs(float(lam[5, 8]) - ((math.pi * 5 / 6) ** 2 + (math.pi * 8 / 9) ** 2)) < 1e-12


def test_vp_linear_abar_numbers():
    vp = make_process("vp", (1, 8, 8))
    expected = {100: 0.897, 250: 0.524, 500: 0.0786, 750: 3.35e-3, 1000: 4.04e-5}
    for i, v in expected.items():
        assert float(vp.abar[i]) == pytest.approx(v, rel=5e-3)
    assert float(vp.abar[0]) == 1.0 and vp.sigma(0) == 0.0


def test_vp_cosine_schedule_decreases_to_near_zero():
    vp = make_process("vp", (1, 8, 8), {"schedule": "cosine"})
    assert bool((vp.abar[1:] < vp.abar[:-1]).all())
    assert float(vp.abar[-1]) < 1e-4


def test_blurring_default_numbers_at_32x32():
    b = make_process("blurring", (3, 32, 32))
    assert float(b.a[0]) == pytest.approx(0.99998, abs=1e-5)
    assert float(b.s[-1]) == pytest.approx(0.99998, abs=1e-5)
    assert float(b.s[0]) == pytest.approx(0.00674, rel=1e-3)
    assert float(b.a[-1]) == pytest.approx(0.00674, rel=1e-3)
    alpha_end = b.alpha(b.T)
    assert float(alpha_end[0, 0]) == pytest.approx(0.0067, rel=1e-2)
    assert float(alpha_end[-1, -1]) == pytest.approx(6.7e-6, rel=1e-2)
    # every sigma_{t|s}^2 > 0 between neighbouring steps (vectorised over all 1000 steps)
    alphas = torch.stack([b.alpha(i) for i in range(b.T + 1)])
    a = alphas[1:] / alphas[:-1]
    s2 = b.s[1:, None, None] ** 2 - a**2 * b.s[:-1, None, None] ** 2
    assert float(s2.min()) > 0


def test_heat_semigroup_and_mean_in_float64():
    heat = make_process("heat", (1, 16, 16))
    u = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    f35 = heat.heat_semigroup(heat.heat_semigroup(u, 3.0), 5.0)
    f8 = heat.heat_semigroup(u, 8.0)
    assert float((f35 - f8).abs().max()) < 1e-14
    assert float((f8.mean((-2, -1)) - u.mean((-2, -1))).abs().max()) < 1e-15


def test_ve_sigma_max_scales_with_diameter():
    assert make_process("ve", (3, 32, 32)).sigma_max == pytest.approx(50.0)
    assert make_process("ve", (1, 8, 8)).sigma_max == pytest.approx(50 * math.sqrt(64 / 3072))
