"""The exact oracle denoiser against brute force, on tiny training sets, and its memory shape."""

import math

import pytest
import torch

from scalespace.denoisers import OracleDenoiser
from scalespace.processes import make_process


def brute_force(process, train, u, i):
    """Materialise every distance in float64 (pixel space)."""
    train = train.to(torch.float64)
    mu = process.marginal_mean(i, train).flatten(1)
    x = u.to(torch.float64).flatten(1)
    sigma = process.sigma(i)
    d2 = torch.cdist(x, mu) ** 2
    logits = -d2 / (2 * sigma**2)
    w = torch.softmax(logits, 1)
    mean = w @ train.flatten(1)
    n, dim = train.shape[0], x.shape[1]
    log_p = torch.logsumexp(logits, 1) - math.log(n) - 0.5 * dim * math.log(2 * math.pi * sigma**2)
    ent = -(w * torch.log(w.clamp_min(1e-300))).sum(1)
    return mean.reshape(u.shape), log_p, ent


@pytest.mark.parametrize("name,i", [("vp", 300), ("ve", 500), ("blurring", 400), ("heat", 40), ("osmosis", 30)])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 2e-3)])
def test_oracle_matches_brute_force(name, i, dtype, tol):
    shape = (1, 6, 5)
    params = {"K": 50} if name == "osmosis" else {}
    p = make_process(name, shape, params)
    g = torch.Generator().manual_seed(1)
    train = torch.rand((37,) + shape, dtype=torch.float64, generator=g) * 2 - 1
    u = p.sample_marginal(i, train[:4], torch.randn((4,) + shape, dtype=torch.float64, generator=g))
    oracle = OracleDenoiser(p, train.to(dtype), chunk=5, dtype=dtype)
    res = oracle.posterior(u.to(dtype), i)
    mean, log_p, ent = brute_force(p, train, u, i)
    assert float((res.mean.to(torch.float64) - mean).abs().max()) < tol
    assert float((res.log_p - log_p).abs().max()) < tol * 100 * max(1.0, float(log_p.abs().max()) / 100)
    assert float((res.entropy - ent).abs().max()) < tol * 10


def test_oracle_on_one_and_two_images():
    p = make_process("vp", (1, 4, 4))
    f = torch.rand(1, 1, 4, 4, dtype=torch.float64) * 2 - 1
    u = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    one = OracleDenoiser(p, f, dtype=torch.float64).posterior(u, 200)
    assert torch.allclose(one.mean, f.expand_as(u), atol=1e-12)
    assert float(one.entropy.abs().max()) < 1e-12
    a, s = float(p.alpha(200)), p.sigma(200)
    gauss = -((u - a * f) ** 2).flatten(1).sum(1) / (2 * s * s) - 8 * math.log(2 * math.pi * s * s)
    assert torch.allclose(one.log_p, gauss, atol=1e-9)
    two = torch.cat([f, -f])
    res = OracleDenoiser(p, two, dtype=torch.float64).posterior(u, 200)
    # w_1 = sigmoid(logit difference), the difference being linear in u
    diff = (((u - a * -f) ** 2) - ((u - a * f) ** 2)).flatten(1).sum(1) / (2 * s * s)
    w1 = torch.sigmoid(diff)
    assert torch.allclose(res.mean, (w1[:, None, None, None] * f + (1 - w1)[:, None, None, None] * -f), atol=1e-10)
    ent = -(w1 * torch.log(w1) + (1 - w1) * torch.log(1 - w1))
    assert torch.allclose(res.entropy, ent, atol=1e-9)


def test_chunk_size_does_not_change_the_result():
    p = make_process("blurring", (1, 8, 8))
    train = torch.rand(50, 1, 8, 8) * 2 - 1
    u = torch.randn(6, 1, 8, 8)
    a = OracleDenoiser(p, train, chunk=7).posterior(u, 600)
    b = OracleDenoiser(p, train, chunk=50).posterior(u, 600)
    assert torch.allclose(a.mean, b.mean, atol=1e-5)
    assert torch.allclose(a.log_p, b.log_p, rtol=1e-5)


def test_default_chunk_is_the_devices():
    from scalespace.kernels import dispatch

    p = make_process("vp", (1, 4, 4))
    train = torch.rand(10, 1, 4, 4) * 2 - 1
    assert OracleDenoiser(p, train).chunk == dispatch.oracle_default_chunk("cpu") == dispatch.ORACLE_CPU_CHUNK
    assert dispatch.oracle_default_chunk("cuda") == dispatch.ORACLE_CHUNK
    assert OracleDenoiser(p, train, chunk=3).chunk == 3


@pytest.mark.parametrize("name", ["vp", "osmosis"])
def test_posterior_rows_do_not_depend_on_the_batch(name):
    """Batches of a multiple of 8 rows, several chunks: a sample's posterior is the same bits in any batch."""
    shape = (1, 6, 5)
    p = make_process(name, shape, {"K": 20} if name == "osmosis" else {})
    g = torch.Generator().manual_seed(2)
    train = torch.rand((70,) + shape, generator=g) * 2 - 1
    u = torch.randn((24,) + shape, generator=g)
    oracle = OracleDenoiser(p, train, chunk=16)
    i = 10 if name == "osmosis" else 300
    whole = oracle.posterior(u, i)
    for lo, hi in ((0, 8), (8, 24)):
        part = oracle.posterior(u[lo:hi], i)
        for field in ("mean", "log_p", "entropy"):
            assert torch.equal(getattr(whole, field)[lo:hi], getattr(part, field)), (lo, hi, field)
