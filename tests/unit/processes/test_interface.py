"""The process interface: what every process has, what only the linear-Gaussian ones have, and the theory facts
the samplers, denoisers and evaluation read from the class (never from the process's name)."""

import pytest
import torch

from scalespace import ScalespaceError
from scalespace.processes import (
    PROCESSES,
    DegradedPrior,
    DriftDiffusionProcess,
    LinearGaussianProcess,
    Process,
    make_process,
)
from scalespace.sampling.samplers import SAMPLERS, check_sampler

SMALL = {"vp": {"T": 20}, "ve": {"T": 20}, "blurring": {"T": 20}, "heat": {"K": 5}, "osmosis": {"K": 3, "t_max": 4.0}}


@pytest.mark.parametrize("name", list(PROCESSES))
def test_every_process_offers_the_base_interface(name):
    p = make_process(name, (1, 6, 6), SMALL[name])
    assert isinstance(p, Process) and isinstance(p, (LinearGaussianProcess, DriftDiffusionProcess))
    u0 = torch.rand(2, 1, 6, 6, dtype=torch.float64) * 2 - 1
    z = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    ids = torch.arange(2)
    assert p.times().shape == (p.T + 1,)
    means = p.marginal_means(u0, [0, p.T], ids)
    assert torch.equal(means[p.T], p.marginal_mean(p.T, u0, ids))
    assert torch.equal(p.sample_marginal(p.T, u0, z, ids), p.marginal_mean(p.T, u0, ids) + p.sigma(p.T) * z)
    assert p.reverse_mean(2, 1, u0, u0, ids).shape == u0.shape
    assert p.steady_draw(u0, z, ids).shape == u0.shape
    # the prior: degraded data for DegradedPrior processes (and the sampler rule agrees), sigma_T z otherwise
    assert p.prior_needs_data == isinstance(p, DegradedPrior)
    if p.prior_needs_data:
        with pytest.raises(ScalespaceError, match="starts from degraded data"):
            p.sample_prior(z)
        assert check_sampler(None, p) == "heat" and p.delta > 0
    else:
        assert torch.equal(p.sample_prior(z), p.sigma(p.T) * z)
    # the SPEC table names every check of section 3 for every process
    assert {"F1", "F2", "F3a", "F3b", "F3c", "F3d", "F4", "R1", "R2", "R3", "R4", "F5-permutation"} <= set(p.expected)


def test_osmosis_has_no_linear_gaussian_methods():
    p = make_process("osmosis", (1, 6, 6), SMALL["osmosis"])
    for method in ("alpha", "transition", "posterior", "to_basis", "log_alpha"):
        assert not hasattr(p, method), method
    assert not p.spectral and not SAMPLERS["ancestral"].applies_to(p)
    per = make_process("osmosis", (1, 6, 6), {**SMALL["osmosis"], "guidance": "per_sample"})
    assert p.shared_operator and not per.shared_operator
    assert p.oracle_bytes(10) == 10 * p.oracle_bytes(1) > 0
    assert p.network_channels() == (3, 2) and p.network_condition().shape == (1, 1, 6, 6)


@pytest.mark.parametrize("name", ["vp", "ve", "blurring", "heat"])
def test_linear_gaussian_processes(name):
    p = make_process(name, (1, 6, 6), SMALL[name])
    assert p.spectral and p.shared_operator and p.oracle_bytes(10) == 0
    assert p.network_channels() == (1, 1) and p.network_condition() is None
    post = p.posterior(3, 2)
    assert post.var.shape == post.coef_ut.shape
    assert (p.semigroup() is not None) == (name == "heat")


def test_theory_facts():
    by = {name: make_process(name, (1, 6, 6), SMALL[name]) for name in PROCESSES}
    assert [n for n, p in by.items() if p.constant_noise] == ["heat", "osmosis"]
    assert {n: p.keeps_mean for n, p in by.items() if p.keeps_mean} == {"heat": "in expectation", "osmosis": "exactly"}
    assert [n for n, p in by.items() if p.grey_density_is_osmosis] == ["vp"]
    assert [n for n, p in by.items() if p.seeded_params] == ["osmosis"]
    assert {n: p.default_objective for n, p in by.items()} == {
        "vp": "eps", "ve": "v", "blurring": "v", "heat": "one_step", "osmosis": "one_step"}
    assert by["ve"].steady_scale(0) is None and by["ve"].steady_scale(3) == 1 / by["ve"].sigma(3)
    assert by["vp"].steady_scale(3) == 1.0


@pytest.mark.parametrize("params", [{"logsnr_min": -2000.0}, {"logsnr_max": 2000.0}, {"logsnr_min": float("-inf")}])
def test_blurring_refuses_a_logsnr_that_would_overflow(params):
    """exp(-logSNR / 2) overflows float64 past |logSNR| = 1419: a one-line error naming the field, not an OverflowError."""
    with pytest.raises(ScalespaceError, match=r"process_params\.logsnr_m(in|ax)"):
        make_process("blurring", (1, 8, 8), params)
