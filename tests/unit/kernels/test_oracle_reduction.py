"""The streaming oracle kernel against the oracle's torch loop, within the stated error bound."""

import math

import pytest
import torch

from scalespace.kernels.oracle_reduction import (
    combine_splits, error_bound, merge_splits, oracle_reduction_reference, oracle_reduction_triton,
)


def problem(rand, gen, b, n, d, dtype, spread):
    """Keys like DCT coefficients of images, queries near some keys; `spread` sets sigma^2 per value."""
    keys = rand(n, d, scale=0.5).to(dtype)
    alpha = 0.8
    pick = torch.randint(0, n, (b,), generator=gen)
    u = alpha * keys[pick].float() + math.sqrt(spread) * rand(b, d)
    query = (alpha * u).to(dtype)
    key_sq = ((alpha * keys.float()) ** 2).sum(1).to(dtype)
    values = rand(n, d, scale=0.7).to(dtype)
    inv_var = 1.0 / spread
    return query, keys, key_sq, values, inv_var


CHUNKED = {"CHUNKED": 1, "CHUNK": 64, "SPLIT": 32, "BLOCK_N": 16, "BLOCK_B": 4, "BLOCK_DV": 32, "BLOCK_D": 64}

CASES = [  # (B, n, D, dtype, sigma^2 per value): diffuse posteriors (sigma^2 ~ D / 20) and sharp ones, odd sizes
    (3, 50, 64, torch.float32, 3.0),
    (5, 301, 49, torch.float32, 0.3),
    (7, 129, 784, torch.float32, 40.0),
    (2, 97, 33, torch.float32, 0.02),
    (4, 200, 64, torch.bfloat16, 3.0),
    (3, 77, 100, torch.bfloat16, 0.3),
]


@pytest.mark.parametrize("b,n,d,dtype,spread", CASES)
def test_oracle_kernel_within_bound(rand, gen, b, n, d, dtype, spread):
    q, k, ksq, v, inv_var = problem(rand, gen, b, n, d, dtype, spread)
    ref = oracle_reduction_reference(q, k, ksq, v, inv_var, chunk=64)
    bound = error_bound(q, k, ksq, v, inv_var, ref[2])
    # one split, and several (the merge of partial sums across splits); the chunked two-product
    # variant with several chunks, splits per chunk and column blocks; its weighted sum on other tiles
    # (row blocks and steps through each score tile of their own)
    pv_tiles = {"BLOCK_N": 32, "PV_BLOCK_B": 8, "PV_BLOCK_K": 16}
    for config in (None, {"SPLIT": 32, "BLOCK_N": 16}, CHUNKED, dict(CHUNKED, P32=1), dict(CHUNKED, **pv_tiles),
                   dict(CHUNKED, P32=1, **pv_tiles)):
        got = oracle_reduction_triton(q, k, ksq, v, inv_var, config=config)
        assert all(t.dtype == torch.float64 and torch.isfinite(t).all() for t in got)
        assert ((got[0] - ref[0]).abs().amax(dim=1) <= bound["mean"]).all()
        assert ((got[1] - ref[1]).abs() <= bound["lse"]).all()
        assert ((got[2] - ref[2]).abs() <= bound["entropy"]).all()
        assert (got[2] >= 0).all() and (got[2] <= math.log(n) + 1e-6).all()


def test_oracle_posterior_is_informative(rand, gen):
    """The test problems are not degenerate: weights neither uniform nor a point mass."""
    q, k, ksq, v, inv_var = problem(rand, gen, 4, 120, 40, torch.float32, 2.0)
    _, _, h = oracle_reduction_triton(q, k, ksq, v, inv_var)
    assert (h > 0.05).all() and (h < math.log(120) - 0.05).all()


@pytest.mark.parametrize("config", [None, CHUNKED])
def test_oracle_rows_do_not_depend_on_the_batch(rand, gen, config):
    q, k, ksq, v, inv_var = problem(rand, gen, 6, 90, 24, torch.float32, 0.4)
    whole = oracle_reduction_triton(q, k, ksq, v, inv_var, config=config)
    part = oracle_reduction_triton(q[2:5], k, ksq, v, inv_var, config=config)
    for a, b in zip(whole, part):
        assert torch.allclose(a[2:5], b, rtol=1e-6, atol=1e-7)


def test_combine_kernel_equals_the_torch_merge(rand):
    """The split merge kernel against merge_splits on partials of very different maxima."""
    s, b, dv = 5, 7, 19
    m, t = rand(s, b, scale=30.0), rand(s, b).abs()
    l = rand(s, b).abs() + 1.0
    acc = rand(s, b, dv)
    got = combine_splits(m, l, t, acc)
    want = merge_splits(m, l, t, acc)
    for x, y in zip(got, want):
        assert x.dtype == torch.float64 and torch.allclose(x, y, rtol=1e-12, atol=1e-14)


def test_oracle_values_of_another_width(rand, gen):
    q, k, ksq, _, inv_var = problem(rand, gen, 3, 60, 30, torch.float32, 0.5)
    v = rand(60, 17)
    got = oracle_reduction_triton(q, k, ksq, v, inv_var)
    ref = oracle_reduction_reference(q, k, ksq, v, inv_var)
    bound = error_bound(q, k, ksq, v, inv_var, ref[2])
    assert got[0].shape == (3, 17)
    assert ((got[0] - ref[0]).abs().amax(dim=1) <= bound["mean"]).all()


def test_chunked_weighted_sum_tiles_are_checked(rand, gen):
    q, k, ksq, v, inv_var = problem(rand, gen, 3, 50, 64, torch.float32, 3.0)
    with pytest.raises(ValueError, match="PV_BLOCK_K"):
        oracle_reduction_triton(q, k, ksq, v, inv_var, config=dict(CHUNKED, PV_BLOCK_K=32))  # wider than BLOCK_N 16
    with pytest.raises(ValueError, match="at least 16"):
        oracle_reduction_triton(q, k, ksq, v, inv_var, config=dict(CHUNKED, PV_BLOCK_K=8))  # a product needs K >= 16


def test_chunked_default_sum_tiles_change_nothing(rand, gen):
    """PV_* equal to the score kernel's tiles is the default configuration, bit for bit."""
    q, k, ksq, v, inv_var = problem(rand, gen, 5, 301, 49, torch.float32, 0.3)
    base = oracle_reduction_triton(q, k, ksq, v, inv_var, config=CHUNKED)
    same = oracle_reduction_triton(q, k, ksq, v, inv_var, config=dict(CHUNKED, PV_BLOCK_B=4, PV_BLOCK_K=16))
    assert all(torch.equal(a, b) for a, b in zip(base, same))


def plain_reference(query, keys, key_sq, values, inv_var, chunk):
    """The reference's loop in plain expression form (fresh tensors every chunk): the bits it must keep."""
    b = query.shape[0]
    m = torch.full((b,), -math.inf, dtype=torch.float64)
    l = torch.zeros(b, dtype=torch.float64)
    ls = torch.zeros(b, dtype=torch.float64)
    acc = torch.zeros(b, values.shape[1], dtype=torch.float64)
    for start in range(0, keys.shape[0], chunk):
        s = (query @ keys[start : start + chunk].T - 0.5 * key_sq[start : start + chunk]) * inv_var
        m_new = torch.maximum(m, s.amax(dim=1).to(torch.float64))
        scale = torch.exp(m - m_new)
        p = torch.exp(s - m_new[:, None].to(s.dtype))
        l = l * scale + p.sum(1, dtype=torch.float64)
        ls = ls * scale + (p * s).sum(1, dtype=torch.float64)
        acc = acc * scale[:, None] + (p.to(values.dtype) @ values[start : start + chunk]).to(torch.float64)
        m = m_new
    lse = m + torch.log(l)
    return acc / l[:, None], lse, (lse - ls / l).clamp_min(0.0)


@pytest.mark.parametrize("b,n,d,dv,chunk,dtype", [
    (8, 128, 64, 64, 4096, torch.float32),  # one chunk
    (16, 301, 49, 17, 64, torch.float32),  # several, the last one narrower
    (24, 200, 64, 64, 7, torch.float32),
    (8, 97, 33, 33, 32, torch.bfloat16),
    (5, 60, 20, 20, 16, torch.float64),
])
def test_reference_buffers_keep_the_plain_form_bits(rand, gen, b, n, d, dv, chunk, dtype):
    """The reference computes in reused buffers, in place: the same bits as the plain expression form."""
    q, k, ksq, v, inv_var = problem(rand, gen, b, n, d, dtype, 0.5)
    v = rand(n, dv, scale=0.7).to(dtype)
    got = oracle_reduction_reference(q, k, ksq, v, inv_var, chunk=chunk)
    want = plain_reference(q, k, ksq, v, inv_var, chunk)
    assert all(torch.equal(x, y) for x, y in zip(got, want))


@pytest.mark.parametrize("threads", [1, 2])
def test_reference_rows_do_not_depend_on_the_batch(rand, gen, threads):
    """Batches padded to a multiple of 8 rows (as the samplers do): every row bit for bit the same."""
    q, k, ksq, v, inv_var = problem(rand, gen, 32, 300, 64, torch.float32, 0.5)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        whole = oracle_reduction_reference(q, k, ksq, v, inv_var, chunk=64)
        for lo, hi in ((0, 8), (8, 24), (16, 32)):
            part = oracle_reduction_reference(q[lo:hi], k, ksq, v, inv_var, chunk=64)
            assert all(torch.equal(a[lo:hi], p) for a, p in zip(whole, part)), (lo, hi)
    finally:
        torch.set_num_threads(before)


def _peak_bytes(fn) -> int:
    """Peak bytes of CPU tensors allocated while fn runs (torch's allocation events, in order)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    now = peak = 0
    for e in sorted((e for e in prof.events() if e.name == "[memory]"), key=lambda e: e.time_range.start):
        now += e.cpu_memory_usage
        peak = max(peak, now)
    return peak


def test_reference_memory_does_not_grow_with_n(rand, gen):
    """O(B D + B chunk + chunk D): the same peak for 4 chunks of training images as for 16."""
    b, d, chunk = 16, 32, 64
    q, k, ksq, v, inv_var = problem(rand, gen, b, 16 * chunk, d, torch.float32, 0.5)
    small = _peak_bytes(lambda: oracle_reduction_reference(q, k[: 4 * chunk], ksq[: 4 * chunk], v[: 4 * chunk],
                                                           inv_var, chunk=chunk))
    large = _peak_bytes(lambda: oracle_reduction_reference(q, k, ksq, v, inv_var, chunk=chunk))
    assert 0 < large == small
    # three (B, chunk) buffers (scores, weights in their dtype and in float64), a few (B, D) float64 ones
    assert large <= 4 * b * chunk * 8 + 8 * b * d * 8 + 4096
