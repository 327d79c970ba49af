"""`reverse_mean`: the heat sampler's step mean (heat, osmosis), ihdm or posterior.

From the denoiser's estimate m = A_s u0_hat of the previous state's clean mean:

- ihdm:      the step's mean is m (inverse heat dissipation);
- posterior: the Gaussian posterior mean E[u_s | u_t, u_0 = u0_hat]; for heat,
             per DCT mode, a u_t + (sigma_{t|s}^2 / sigma_t^2) m with a = alpha_t / alpha_s
             (constant sigma: a u_t + (1 - a^2) m).

Checked here against computations that do not use the code under test, and
through the sample job: with the exact oracle, ihdm ends on training images,
posterior does not.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import scipy.fft
import torch

from scalespace import ScalespaceError
from scalespace.cli import main
from scalespace.data import load_dataset
from scalespace.denoisers.base import Denoiser
from scalespace.jobs.images import from_npz
from scalespace.jobs.run import run_job
from scalespace.jobs.specs import SHARD_FIELDS, parse_spec
from scalespace.processes import make_process
from scalespace.processes import osmosis_scheme as scheme
from scalespace.sampling.samplers import DEFAULT_REVERSE_MEAN, REVERSE_MEANS, sample_degraded
from scalespace.storage.local import LocalStore

SHAPE = (1, 4, 4)


def _dct(x: np.ndarray) -> np.ndarray:
    return scipy.fft.dctn(x, type=2, norm="ortho", axes=(-2, -1))


def _idct(x: np.ndarray) -> np.ndarray:
    return scipy.fft.idctn(x, type=2, norm="ortho", axes=(-2, -1))


def _heat_alpha(p, i: int) -> np.ndarray:
    """alpha_i = exp(-lambda tau_i) per DCT mode of a 4x4 heat process, lambda = (pi k / H)^2 + (pi l / W)^2."""
    h, w = SHAPE[1:]
    lam = (np.pi * np.arange(h) / h)[:, None] ** 2 + (np.pi * np.arange(w) / w)[None, :] ** 2
    return np.exp(-lam * float(p.tau[i]))


class _Fixed(Denoiser):
    """A denoiser whose u0_hat is a fixed image batch."""

    def __init__(self, u0):
        self.u0 = u0

    def predict_u0(self, u_t, i, ids=None):
        return self.u0.to(u_t.dtype)


class _NoNoise:
    """A one-step walk draws no noise (the last step returns its mean): any draw fails the test."""

    ids = None

    def __call__(self, step, stream=None):
        raise AssertionError("the last step draws no noise")


def test_the_two_means_on_a_tiny_heat_process():
    p = make_process("heat", SHAPE, {"K": 6, "sigma_blur_max": 2.0})
    g = torch.Generator().manual_seed(0)
    u0 = torch.rand((2,) + SHAPE, generator=g, dtype=torch.float64) * 2 - 1
    u_t = torch.rand((2,) + SHAPE, generator=g, dtype=torch.float64) * 2 - 1
    for t, s in [(1, 0), (4, 3), (6, 2)]:
        a_t, a_s = _heat_alpha(p, t), _heat_alpha(p, s)
        m = _idct(a_s * _dct(u0.numpy()))  # ihdm: A_s u0_hat
        a = a_t / a_s
        sig = p.params.sigma
        sts2 = sig**2 - a**2 * sig**2
        post = _idct(a * sig**2 / sig**2 * _dct(u_t.numpy()) + sts2 / sig**2 * _dct(m))
        assert np.allclose(post, _idct(a * _dct(u_t.numpy()) + (1 - a**2) * a_s * _dct(u0.numpy())), atol=1e-12)
        got_m = Denoiser.reverse_mean(_Fixed(u0), p, u_t, t, s)
        assert np.allclose(got_m.numpy(), m, atol=1e-12)
        got_post = p.posterior_mean_at(t, s, u_t, got_m)
        assert np.allclose(got_post.numpy(), post, atol=1e-12)
        # the same as the process's posterior mean at u0_hat (the oracle's fused step)
        assert torch.allclose(got_post, p.reverse_mean(t, s, u_t, u0), atol=1e-12)
        # the sampler's last step (no noise) returns exactly that mean, by either path
        for rule, want in [("ihdm", m), ("posterior", post)]:
            out = sample_degraded(p, _Fixed(u0), u_t, [t, s], _NoNoise(), reverse_mean=rule)
            assert np.allclose(out.numpy(), want, atol=1e-12), rule


def test_osmosis_adjoint_and_posterior_mean():
    p = make_process("osmosis", SHAPE, {"K": 3, "t_max": 2.0})
    d = p._drift(None, 1, torch.float64, "cpu")
    g = torch.Generator().manual_seed(1)
    x = torch.randn((2,) + SHAPE, generator=g, dtype=torch.float64)
    y = torch.randn((2,) + SHAPE, generator=g, dtype=torch.float64)
    assert torch.allclose((scheme.apply_operator(x, d) * y).sum(), (x * scheme.apply_operator_transpose(y, d)).sum())
    # the posterior mean m + M^T (u_t - A_t u0) with M the evolution 1 -> 3, M^T from M's matrix built column by column
    u0 = torch.rand((1,) + SHAPE, generator=g, dtype=torch.float64)
    u_t = torch.rand((1,) + SHAPE, generator=g, dtype=torch.float64)
    c = p.params.offset

    def evolve(v):
        for k in (2, 3):
            v = p._interval(v, d, k)
        return v

    eye = torch.eye(16, dtype=torch.float64).reshape(16, *SHAPE)
    M = evolve(eye).reshape(16, 16).T  # column j = M e_j
    m = p.marginal_mean(1, u0)
    want = m.reshape(-1) + M.T @ (u_t - p.marginal_mean(3, u0)).reshape(-1)
    got = p.posterior_mean_at(3, 1, u_t, m)
    assert torch.allclose(got.reshape(-1), want, atol=1e-10)
    assert torch.allclose(evolve(m + c) - c, p.marginal_mean(3, u0), atol=1e-12)


# --- through the sample job ---------------------------------------------------------------

_HEAT = {"kind": "sample", "process": "heat", "data": "digits", "n": 4, "steps": 10, "batch_size": 4, "seed": 2,
         "device": "cpu", "statistics": ["mean"]}


def _samples(tmp_path, job_id: str, **extra) -> np.ndarray:
    store = LocalStore(tmp_path)
    run_job(parse_spec({**_HEAT, **extra}), store, job_id=job_id)
    return from_npz(store.get("jobs", job_id, "samples.npz"))["samples"]


def _nearest(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(L2 distance, largest per-pixel difference) of each sample to its nearest training image (L2)."""
    train = load_dataset("digits", "train").images.reshape(-1, 64).double()
    x = torch.from_numpy(samples).reshape(-1, 64).double()
    dist, j = torch.cdist(x, train).min(1)
    return dist.numpy(), (x - train[j]).abs().amax(1).numpy()


def test_heat_oracle_ihdm_lands_on_training_images_and_posterior_does_not(tmp_path):
    ihdm = _samples(tmp_path, "ihdm", reverse_mean="ihdm")
    post = _samples(tmp_path, "posterior", reverse_mean="posterior")
    default = _samples(tmp_path, "default")
    assert np.array_equal(default, ihdm if DEFAULT_REVERSE_MEAN == "ihdm" else post)
    assert (_nearest(ihdm)[1] < 1e-6).all()  # a training image up to float32 rounding
    assert (_nearest(post)[0] > 1e-2).all()


@pytest.mark.parametrize("rule", REVERSE_MEANS)
def test_osmosis_accepts_both(tmp_path, rule):
    spec = {**_HEAT, "process": "osmosis", "process_params": {"K": 4, "t_max": 4.0}, "steps": None, "n": 2,
            "reverse_mean": rule}
    store = LocalStore(tmp_path)
    run_job(parse_spec(spec), store, job_id=rule)
    assert np.isfinite(from_npz(store.get("jobs", rule, "samples.npz"))["samples"]).all()


# --- refusals, the command line, the hash ---------------------------------------------------


@pytest.mark.parametrize("process", ["vp", "ve", "blurring"])
def test_non_default_is_refused_where_it_cannot_apply(tmp_path, process):
    spec = {"kind": "sample", "process": process, "data": "digits", "n": 2, "steps": 3, "device": "cpu",
            "reverse_mean": "posterior"}
    with pytest.raises(ScalespaceError, match=rf"^reverse_mean: 'posterior' applies to .*not '{process}'"):
        run_job(parse_spec(spec), LocalStore(tmp_path))
    assert not list(tmp_path.rglob("manifest.json"))


def test_non_default_is_refused_with_another_sampler(tmp_path):
    spec = {**_HEAT, "sampler": "ancestral", "reverse_mean": "posterior"}
    with pytest.raises(ScalespaceError, match=r"^reverse_mean: .*'heat' sampler"):
        run_job(parse_spec(spec), LocalStore(tmp_path))


def test_unknown_rule_is_refused_naming_the_field():
    with pytest.raises(ScalespaceError, match=r"reverse_mean"):
        parse_spec({**_HEAT, "reverse_mean": "average"})


def test_command_line(tmp_path, capsys):
    base = ["sample", "--data", "digits", "--n", "2", "--steps", "3", "--out", str(tmp_path), "--quiet"]
    assert main([*base, "--process", "vp", "--reverse-mean", "posterior"]) == 2
    assert "reverse_mean" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--process", "heat", "--reverse-mean", "average"])
    assert main([*base, "--process", "heat", "--reverse-mean", "posterior"]) == 0
    manifest = json.loads(next(tmp_path.rglob("manifest.json")).read_text())
    assert manifest["spec"]["reverse_mean"] == "posterior"


def test_the_default_leaves_the_spec_hash_as_before_the_field():
    spec = parse_spec({"kind": "sample", "process": "heat", "data": "digits", "n": 4})
    before = {k: v for k, v in spec.model_dump(mode="json").items() if k not in ("timestep_spacing", "reverse_mean", "pictures", *SHARD_FIELDS)}
    blob = json.dumps(before, sort_keys=True, separators=(",", ":")).encode()
    assert spec.spec_hash() == hashlib.sha256(blob).hexdigest()
    assert parse_spec({"kind": "sample", "process": "heat", "data": "digits", "n": 4,
                       "reverse_mean": DEFAULT_REVERSE_MEAN}).spec_hash() == spec.spec_hash()
    other = next(r for r in REVERSE_MEANS if r != DEFAULT_REVERSE_MEAN)
    assert parse_spec({"kind": "sample", "process": "heat", "data": "digits", "n": 4,
                       "reverse_mean": other}).spec_hash() != spec.spec_hash()


# --- the evaluate and train jobs sample with the same rule ------------------------------------


@pytest.mark.parametrize("kind,extra", [("evaluate", {}), ("train", {})])
def test_evaluate_and_train_take_the_field(kind, extra):
    from scalespace.jobs.evaluate import check_evaluate_spec
    from scalespace.jobs.train import check_train_spec

    check = check_evaluate_spec if kind == "evaluate" else check_train_spec
    base = {"kind": kind, "process": "heat", "data": "digits", "data_limit": 64, **extra}
    spec = parse_spec(base)
    assert spec.reverse_mean == DEFAULT_REVERSE_MEAN
    before = {k: v for k, v in spec.model_dump(mode="json").items() if k not in ("reverse_mean", *SHARD_FIELDS)}
    blob = json.dumps(before, sort_keys=True, separators=(",", ":")).encode()
    assert spec.spec_hash() == hashlib.sha256(blob).hexdigest()
    check(parse_spec({**base, "reverse_mean": "posterior"}))  # heat: accepted
    with pytest.raises(ScalespaceError, match=r"^reverse_mean: 'posterior' applies to .*not 'vp'"):
        check(parse_spec({**base, "process": "vp", "reverse_mean": "posterior"}))
