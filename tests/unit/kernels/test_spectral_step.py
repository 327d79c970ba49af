"""The fused spectral posterior step against the samplers' torch expression."""

import pytest
import torch

from scalespace.kernels.dct_operator import rel_error_bound
from scalespace.kernels.philox import StepNoise
from scalespace.kernels.spectral_step import spectral_step_reference, spectral_step_triton

SHAPES = [(3, 1, 8, 8), (4, 3, 7, 9), (2, 1, 28, 28), (1, 2, 64, 33)]


def norms(t):
    return t.double().flatten(-2).norm(dim=-1)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spectral_step_within_bound(rand, gen, shape, dtype):
    u = rand(*shape, dtype=dtype)
    u0 = rand(*shape, dtype=dtype, scale=1.5)
    hw = shape[-2:]
    cut = torch.rand(hw, generator=gen, dtype=torch.float64) + 0.05
    cu0 = torch.rand(hw, generator=gen, dtype=torch.float64) + 0.05
    std = torch.rand(hw, generator=gen, dtype=torch.float64) + 0.05
    ids = torch.randint(0, 2**33, (shape[0],), generator=gen)
    cases = [
        (u, u0, cut, cu0, std, StepNoise(99, ids, 12), True, True),  # ancestral: noise in the DCT basis
        (u, u0, cut, cu0, 0.0125, StepNoise(5, ids, 3), False, False),  # heat sampler: noise in pixels
        (u, u0, cut, cu0, std, None, False, True),  # last step
    ]
    eps = rel_error_bound(max(hw), dtype)
    for args in cases:
        got = spectral_step_triton(*args)
        ref = spectral_step_reference(*args)
        assert got.dtype == dtype and torch.isfinite(got).all()
        z = args[5].reference(shape[1:]) if args[5] is not None else torch.zeros(shape)
        smax = float(torch.as_tensor(args[4]).abs().max())
        bound = eps * (cut.max() * norms(u) + cu0.max() * norms(u0.clamp(-1, 1) if args[6] else u0) + smax * norms(z))
        assert (norms(got - ref.to(dtype)) <= bound).all()


def test_spectral_step_per_channel_coefficients(rand, gen):
    shape = (2, 3, 12, 10)
    u, u0 = rand(*shape), rand(*shape)
    cut, cu0, std = (torch.rand(shape[1:], generator=gen, dtype=torch.float64) + 0.1 for _ in range(3))
    nz = StepNoise(8, torch.tensor([3, 8]), 4)
    got = spectral_step_triton(u, u0, cut, cu0, std, nz)
    ref = spectral_step_reference(u, u0, cut, cu0, std, nz)
    bound = rel_error_bound(12, torch.float32) * (norms(u) + norms(u0) + norms(nz.reference(shape[1:]))) * 1.1
    assert (norms(got - ref) <= bound).all()
