"""The in-kernel noise equals shared.sampling.noise bit for bit: integer words and normals."""

import pytest
import torch

from shared.kernels.philox import StepNoise, normal_reference, normal_triton, philox_reference
from shared.sampling.noise import Stream

SEEDS = [0, 1, 2**31 - 1, 2**32 + 12345, 2**63 - 1]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 7, 9), (2, 5)])
def test_words_and_normals_bit_identical(seed, shape):
    ids = torch.tensor([0, 1, 17, 2**32 + 3, 2**40 + 1, 123456789])
    for step, stream in [(0, Stream.STEP), (1, Stream.PRIOR), (999, Stream.STEP), (2**32 + 5, Stream.PERTURB)]:
        z, r0, r1 = normal_triton(seed, ids, step, shape, int(stream), words=True)
        d = r0[0].numel()
        e = torch.arange(d).expand(len(ids), d)
        w = philox_reference(e, ids[:, None].expand(len(ids), d), step, int(stream), seed)
        assert torch.equal(r0.reshape(len(ids), d), w[0])
        assert torch.equal(r1.reshape(len(ids), d), w[1])
        ref = normal_reference(seed, ids, step, shape, int(stream))
        assert torch.equal(z, ref)
        assert torch.isfinite(z).all()


def test_noise_is_per_sample_not_per_batch():
    ids = torch.arange(10, 17)
    whole = normal_triton(5, ids, 3, (2, 6, 5))
    parts = torch.cat([normal_triton(5, ids[:2], 3, (2, 6, 5)), normal_triton(5, ids[2:], 3, (2, 6, 5))])
    assert torch.equal(whole, parts)
    assert not torch.equal(whole[0], whole[1])  # different samples, different noise


def test_step_noise_reference_matches_noise_module():
    ids = torch.tensor([4, 9])
    sn = StepNoise(77, ids, 12)
    assert torch.equal(sn.reference((1, 4, 4)), normal_reference(77, ids, 12, (1, 4, 4)))
    assert sn.words() == (12, int(Stream.STEP), 77, 0)
