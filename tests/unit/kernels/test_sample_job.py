"""A whole `sample` job gives the same samples with the kernels (interpreter) and with the references.

Both runs use deterministic mode. The kernels follow the references' float
operations, except the matrix products (the oracle's scores and, for the
spectral processes, the DCT), which sum in another order. Tolerances on the
samples (values in [-1, 1]):

- vp, ve, blurring, osmosis: 1e-4 (float32 rounding of those products,
  carried through 5 steps; observed: 0 for ve and osmosis, 7e-6 for vp and
  blurring);
- heat: 1e-2. Its constant sigma = 0.01 makes the oracle's scores
  (q . k - |k|^2 / 2) / sigma^2 carry float32 rounding errors of order
  D u |q| |k| / sigma^2 (0.01 to 0.1 nats at 8 x 8), so the posterior
  weights agree only to that factor and the mean moves by up to about 1e-3
  (observed: 4e-7 with 128 training images, 7e-4 with all 1,437).
"""

import pytest
import torch

from scalespace.jobs.images import from_npz
from scalespace.jobs.run import run_job
from scalespace.kernels import dispatch
from scalespace.storage.local import LocalStore

TOLERANCE = {"vp": 1e-4, "ve": 1e-4, "blurring": 1e-4, "heat": 1e-2, "osmosis": 1e-4}


def run(spec: dict, mode: str, root) -> tuple[torch.Tensor, dict]:
    store = LocalStore(root)
    with dispatch.override(kernels=mode, deterministic=True):
        manifest = run_job(spec, store)
    samples = from_npz(store.get("jobs", manifest["job_id"], "samples.npz"))["samples"]
    return torch.as_tensor(samples), manifest


@pytest.mark.parametrize("process", ["vp", "ve", "blurring", "heat", "osmosis"])
def test_sample_job_kernels_equal_references(process, tmp_path):
    spec = {"kind": "sample", "process": process, "data": "digits", "data_limit": 128, "n": 2, "steps": 5,
            "batch_size": 2, "seed": 7, "device": "cpu"}
    if process == "osmosis":  # fewer explicit steps: the interpreter is slow
        spec["process_params"] = {"K": 5, "t_max": 4.0}
    ref, m_ref = run(spec, "reference", tmp_path / "ref")
    got, m_got = run(spec, "triton", tmp_path / "kernels")
    assert m_ref["kernels"]["implementation"] == "reference"
    assert m_got["kernels"]["implementation"] == "triton" and m_got["kernels"]["deterministic"] is True
    assert got.shape == ref.shape == (2, 1, 8, 8) and torch.isfinite(got).all()
    assert ref.abs().max() > 0.1  # real samples, not a degenerate constant
    diff = (got - ref).abs().max().item()
    assert diff <= TOLERANCE[process], f"{process}: max difference {diff}"


def test_oracle_dtype_reaches_the_oracle(tmp_path):
    """`oracle_dtype: bfloat16` runs the oracle's products in bf16: samples close to, but not equal to, float32."""
    spec = {"kind": "sample", "process": "vp", "data": "digits", "data_limit": 128, "n": 2, "steps": 5,
            "batch_size": 2, "seed": 7, "device": "cpu"}
    f32, _ = run(spec, "reference", tmp_path / "f32")
    bf16, manifest = run(dict(spec, oracle_dtype="bfloat16"), "reference", tmp_path / "bf16")
    assert torch.isfinite(bf16).all() and bf16.shape == f32.shape
    diff = (bf16 - f32).abs().max().item()
    assert 0 < diff < 0.25, diff  # bf16 rounding moves the posterior means a little
    with pytest.raises(Exception, match="oracle_dtype"):
        run(dict(spec, oracle_dtype="float16"), "reference", tmp_path / "f16")


class _Squash:
    """An elementwise denoiser: every backend computes the same u0_hat, so only the step itself can differ."""

    name = "squash"

    def predict_u0(self, u_t, i, ids=None):
        return torch.tanh(1.3 * u_t)


@pytest.mark.parametrize("process,eta", [("vp", 0.0), ("vp", 0.7), ("ve", 1.0)])
def test_ddim_runs_the_fused_step_bit_for_bit(process, eta, monkeypatch):
    """DDIM is linear in (u_t, u0_hat): on the kernel path it is one reverse_step launch per step,
    with in-kernel noise, equal bit for bit to the torch code (no FMA contraction in deterministic mode)."""
    from scalespace.kernels import reverse_step
    from scalespace.processes import make_process
    from scalespace.noise import NoiseSource, Stream
    from scalespace.sampling.samplers import sample_ddim
    from scalespace.sampling.schedule import respace

    launches = []
    real = reverse_step.reverse_step_triton
    monkeypatch.setattr(reverse_step, "reverse_step_triton", lambda *a, **k: launches.append(a[5]) or real(*a, **k))
    p = make_process(process, (1, 5, 7), {"T": 100})
    schedule = respace(p.T, 6)
    noise = NoiseSource(11, torch.tensor([3, 4, 9]), p.shape)
    u_T = noise(p.T, stream=Stream.PRIOR) * p.sigma(p.T)
    out = {}
    for mode in ("reference", "triton"):
        with dispatch.override(kernels=mode, deterministic=True):
            out[mode] = sample_ddim(p, _Squash(), u_T.clone(), schedule, noise, eta=eta)
    assert torch.isfinite(out["reference"]).all() and out["reference"].abs().max() > 0.1
    assert torch.equal(out["triton"], out["reference"])
    assert len(launches) == len(schedule) - 1  # every step fused
    # noise only on the steps that take it: eta > 0 and not the last step
    assert sum(n is not None for n in launches) == (len(schedule) - 2 if eta > 0 else 0)


def test_ddim_sample_job_kernels_equal_references(tmp_path):
    spec = {"kind": "sample", "process": "vp", "data": "digits", "data_limit": 128, "n": 2, "steps": 5,
            "batch_size": 2, "seed": 7, "device": "cpu", "sampler": "ddim", "eta": 0.5}
    ref, _ = run(spec, "reference", tmp_path / "ref")
    got, _ = run(spec, "triton", tmp_path / "kernels")
    assert torch.isfinite(got).all() and ref.abs().max() > 0.1
    assert (got - ref).abs().max().item() <= TOLERANCE["vp"]
