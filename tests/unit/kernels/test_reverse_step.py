"""The fused isotropic reverse step against the samplers' torch expression."""

import pytest
import torch

from scalespace.kernels.philox import StepNoise
from scalespace.kernels.reverse_step import REL_ERROR_BOUND, reverse_step_reference, reverse_step_triton

SHAPES = [(3, 1, 8, 8), (5, 3, 7, 9), (2, 1, 28, 28), (1, 2, 13, 64)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_step_matches_reference(rand, gen, shape, dtype):
    u = rand(*shape, dtype=dtype)
    u0 = rand(*shape, dtype=dtype, scale=1.5)  # beyond [-1, 1], so clipping matters
    ids = torch.randint(0, 2**40, (shape[0],), generator=gen)
    cases = [
        (u, u0, 0.93, 0.11, 0.3, StepNoise(12345678901, ids, 37), True),  # ancestral step with clip
        (u, u0, 0.5, 0.25, 0.0, None, False),  # last step: no noise
        (u, None, 1.0, 0.0, 0.0125, StepNoise(3, ids, 2), False),  # "mean + delta z"
    ]
    for args in cases:
        got = reverse_step_triton(*args)
        ref = reverse_step_reference(*args)
        assert torch.isfinite(got).all()
        rel = ((got - ref).abs() / ref.abs().clamp_min(1e-30)).max()
        assert rel <= REL_ERROR_BOUND
        # the interpreter never contracts a * b + c: bit for bit
        assert torch.equal(got, ref)


def test_step_is_batch_independent(rand):
    u = rand(6, 1, 9, 11)
    u0 = rand(6, 1, 9, 11)
    ids = torch.arange(100, 106)
    whole = reverse_step_triton(u, u0, 0.9, 0.2, 0.4, StepNoise(1, ids, 5))
    parts = torch.cat([
        reverse_step_triton(u[:1], u0[:1], 0.9, 0.2, 0.4, StepNoise(1, ids[:1], 5)),
        reverse_step_triton(u[1:], u0[1:], 0.9, 0.2, 0.4, StepNoise(1, ids[1:], 5)),
    ])
    assert torch.equal(whole, parts)


def test_step_refuses_mismatched_ids(rand):
    u = rand(3, 1, 4, 4)
    with pytest.raises(ValueError, match="noise ids"):
        reverse_step_triton(u, u, 1.0, 0.0, 0.1, StepNoise(1, torch.arange(2), 1))


@pytest.mark.parametrize("block", [16, 64])
def test_step_with_several_programs_per_sample(rand, gen, block):
    """The GPU layout: each sample's values split over several programs, the last one partly masked."""
    u, u0 = rand(4, 1, 5, 7), rand(4, 1, 5, 7)  # 35 values a sample: 3 blocks of 16, 1 of 64
    ids = torch.randint(0, 2**40, (4,), generator=gen)
    for noise in (StepNoise(99, ids, 4), None):
        got = reverse_step_triton(u, u0, 0.8, 0.3, 0.2, noise, block=block)
        assert torch.equal(got, reverse_step_reference(u, u0, 0.8, 0.3, 0.2, noise))
