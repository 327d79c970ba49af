"""The fused DCT-domain operator against the float64 reference, within the stated bound."""

import pytest
import torch

from scalespace.kernels.dct_operator import dct_scale_reference, dct_scale_triton, rel_error_bound

SHAPES = [(3, 1, 8, 8), (5, 3, 7, 9), (2, 1, 28, 28), (1, 2, 64, 33), (2, 1, 1, 5)]


def per_image_error(got, ref, x, scale):
    err = (got.double() - ref).flatten(-2).norm(dim=-1)
    return err / (scale.abs().max() * x.double().flatten(-2).norm(dim=-1))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dct_scale_within_bound(rand, gen, shape, dtype):
    x = rand(*shape, dtype=dtype)
    for scale in (torch.rand(shape[-2:], generator=gen, dtype=torch.float64) + 0.1,
                  torch.rand(shape[1:], generator=gen, dtype=torch.float64) + 0.1):  # per channel
        got = dct_scale_triton(x, scale)
        ref = dct_scale_reference(x.double(), scale)  # the float64 reference
        assert got.dtype == dtype and torch.isfinite(got).all()
        bound = rel_error_bound(max(shape[-2:]), dtype)
        assert per_image_error(got, ref, x, scale).max() <= bound


def test_dct_scale_identity_and_unbatched(rand):
    x = rand(2, 10, 12)  # (N, H, W): no channel axis
    got = dct_scale_triton(x, torch.ones(10, 12, dtype=torch.float64))
    assert got.shape == x.shape
    err = (got - x).double().flatten(-2).norm(dim=-1)
    assert (err <= rel_error_bound(12, torch.float32) * x.double().flatten(-2).norm(dim=-1)).all()


def test_dct_refuses_large_images(rand):
    with pytest.raises(ValueError, match="64"):
        dct_scale_triton(rand(1, 1, 65, 8), torch.ones(65, 8))
