"""The in-kernel noise equals scalespace.noise bit for bit: integer words and normals."""

import math

import pytest
import torch

from scalespace.kernels.philox import StepNoise, normal_triton
from scalespace.noise import Stream, counter_words, normal

SEEDS = [0, 1, 2**31 - 1, 2**32 + 12345, 2**63 - 1]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 7, 9), (2, 5), (1, 1, 3)])
def test_words_and_normals_bit_identical(seed, shape):
    ids = torch.tensor([0, 1, 17, 2**32 + 3, 2**40 + 1, 123456789])
    for step, stream in [(0, Stream.STEP), (1, Stream.PRIOR), (999, Stream.STEP), (2**32 + 5, Stream.PERTURB)]:
        z, words = normal_triton(seed, ids, step, shape, int(stream), words=True)
        q = -(-math.prod(shape) // 4)  # counters per sample: four normals each
        assert words.shape == (len(ids), q, 4)
        n = torch.arange(q).expand(len(ids), q)
        w = counter_words(n, ids[:, None].expand(len(ids), q), step, int(stream), seed)
        assert torch.equal(words, torch.stack(w, dim=-1))
        ref = normal(seed, ids, step, shape, stream)
        assert torch.equal(z, ref)
        # the per-element path of the DCT kernels (one counter per element) draws the same numbers
        assert torch.equal(normal_triton(seed, ids, step, shape, int(stream), any_layout=True), ref)
        assert torch.isfinite(z).all()


def test_four_normals_per_counter():
    """Elements 4n..4n+3 are (R cos, R sin) of the word pairs (r0, r1) and (r2, r3) of counter n."""
    seed, ids, step = 99, torch.tensor([3, 2**33 + 7]), 41
    z = normal(seed, ids, step, (2, 3, 5)).reshape(2, -1).to(torch.float64)  # 30 values: 8 counters
    n = torch.arange(8).expand(2, 8)
    r = [x.to(torch.float64) for x in counter_words(n, ids[:, None].expand(2, 8), step, int(Stream.STEP), seed)]
    for pair, (a, b) in enumerate(((0, 1), (2, 3))):
        radius = torch.sqrt(-2 * torch.log((r[a] + 1) * 2.0**-32))
        theta = 2 * math.pi * r[b] * 2.0**-32
        cos_part = (radius * torch.cos(theta)).reshape(2, 8)
        sin_part = (radius * torch.sin(theta)).reshape(2, 8)
        got_cos = z[:, 2 * pair :: 4]
        got_sin = z[:, 2 * pair + 1 :: 4]
        torch.testing.assert_close(got_cos, cos_part[:, : got_cos.shape[1]], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(got_sin, sin_part[:, : got_sin.shape[1]], rtol=1e-6, atol=1e-6)
    # and they look standard normal: 200,000 values
    big = normal(5, torch.arange(1000), 0, (200,)).to(torch.float64)
    assert abs(big.mean()) < 0.01 and abs(big.std() - 1) < 0.01
    # the four values of a counter are independent (Box-Muller's pair is, despite its shared radius):
    # neither the values nor their squares correlate
    four = big.reshape(-1, 4)
    assert (torch.corrcoef(four.T) - torch.eye(4)).abs().max() < 0.01
    assert (torch.corrcoef((four**2).T) - torch.eye(4)).abs().max() < 0.01


@pytest.mark.parametrize("block", [4, 16, 64])
def test_normal_kernel_blocks_and_tails(block):
    ids = torch.tensor([8, 9, 10])
    shape = (1, 5, 7)  # 35 values a sample: 9 counters, the last one with 3 values
    ref = normal(12, ids, 3, shape)
    assert torch.equal(normal_triton(12, ids, 3, shape, block=block), ref)
    with pytest.raises(ValueError, match="power of 2"):
        normal_triton(12, ids, 3, shape, block=6)


def test_noise_is_per_sample_not_per_batch():
    ids = torch.arange(10, 17)
    whole = normal_triton(5, ids, 3, (2, 6, 5))
    parts = torch.cat([normal_triton(5, ids[:2], 3, (2, 6, 5)), normal_triton(5, ids[2:], 3, (2, 6, 5))])
    assert torch.equal(whole, parts)
    assert not torch.equal(whole[0], whole[1])  # different samples, different noise


def test_step_noise_reference_matches_noise_module():
    ids = torch.tensor([4, 9])
    sn = StepNoise(77, ids, 12)
    assert torch.equal(sn.reference((1, 4, 4)), normal(77, ids, 12, (1, 4, 4)))
    assert sn.words() == (12, int(Stream.STEP), 77, 0)


@pytest.mark.parametrize("per_sample,block", [(784, 128), (4096, 512), (3072, 512), (2352, 128), (64, 128), (640, 128), (1536, 512)])
def test_noise_tiling_pads_least_with_one_counter_a_thread(per_sample, block):
    from scalespace.kernels.philox import noise_tiling

    got, warps = noise_tiling(per_sample)
    assert (got, warps) == (block, block // 128)  # 128 values = 32 counters = one warp
    padded = -(-per_sample // got) * got
    assert all(padded <= -(-per_sample // b) * b for b in (128, 256, 512))
