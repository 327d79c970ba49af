"""R4: a distribution test of the reverse samples that sees past the mean and covariance.

The counterexample a Fréchet distance cannot see: a Gaussian with exactly the digits' mean and
covariance. R4's MMD test must reject it at the sample size it states; real data must pass.
"""

from __future__ import annotations

import pytest
import torch

from scalespace.denoisers import OracleDenoiser
from scalespace.evaluation.reverse import (
    R4_LEVEL,
    R4_POWER_N,
    ReverseRun,
    check_r4,
    run_reverse,
)
from scalespace.processes import make_process


def _run(samples: torch.Tensor) -> ReverseRun:
    return ReverseRun(samples, samples, list(range(11)), "ancestral")


def _moment_matched(train: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n draws of the Gaussian with the training images' mean and covariance (the covariance is singular:
    the digits' corner pixels never change, so draw through its eigendecomposition)."""
    flat = train.reshape(len(train), -1).to(torch.float64)
    mean, cov = flat.mean(0), torch.cov(flat.T)
    ev, vec = torch.linalg.eigh(cov)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, flat.shape[1], generator=g, dtype=torch.float64)
    return (mean + (z * ev.clamp_min(0).sqrt()) @ vec.T).reshape(n, *train.shape[1:]).float()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_moment_matched_gaussian_is_rejected_at_the_stated_n(digits, seed):
    vp = make_process("vp", (1, 8, 8))
    c = check_r4(vp, digits, _run(_moment_matched(digits, R4_POWER_N, 100 + seed)), seed)
    assert c.kind == "test" and c.key == "R4" and c.tolerance == R4_LEVEL
    assert c.holds is False and c.figure < R4_LEVEL and not c.agrees
    assert c.details["n"] == R4_POWER_N and c.details["p_value"] == c.figure
    # the Fréchet figure of before cannot tell: it is within the old limit (3 times the sampling floor)
    assert c.details["fd_ratio"] < 3.0
    assert f"from {R4_POWER_N} samples on" in c.explanation


def test_moment_matched_gaussian_is_rejected_at_the_default_sample_size(digits):
    c = check_r4(make_process("ve", (1, 8, 8)), digits, _run(_moment_matched(digits, 128, 7)), 0)
    assert c.holds is False and c.figure == pytest.approx(1 / 501)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_disjoint_halves_of_the_data_pass(digits, seed):
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(digits), generator=g)
    half = len(digits) // 2
    train, other = digits[perm[:half]], digits[perm[half:]]
    c = check_r4(make_process("vp", (1, 8, 8)), train, _run(other[:128]), seed)
    assert c.holds is True and c.agrees and c.figure >= R4_LEVEL


def test_the_oracles_samples_pass_against_its_training_set(digits):
    vp = make_process("vp", (1, 8, 8))
    train = digits[:600]
    oracle = OracleDenoiser(vp, train)
    run = run_reverse(vp, oracle, train, 64, 0, 20)
    c = check_r4(vp, train, run, 0)
    assert c.holds is True and c.agrees
    assert "20 steps of the ancestral sampler" in c.explanation


def test_r4_is_reproducible_and_caps_its_sample_size(digits):
    from scalespace.evaluation import reverse

    vp = make_process("vp", (1, 8, 8))
    run = _run(digits[:40])
    a, b = check_r4(vp, digits, run, 3), check_r4(vp, digits, run, 3)
    assert a.figure == b.figure and a.details == b.details
    assert reverse.R4_MAX_N >= 512
