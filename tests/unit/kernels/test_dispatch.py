"""The dispatch: which implementation runs where, deterministic mode, and what the manifest records."""

import os

import pytest
import torch

from scalespace import ScalespaceError
from scalespace.kernels import dispatch
from scalespace.kernels.philox import StepNoise


def test_auto_picks_the_reference_on_cpu_and_triton_on_cuda():
    with dispatch.override(kernels="auto"):
        assert dispatch.use_triton("cpu") is False
        assert dispatch.use_triton("cuda") is (dispatch.triton_version() is not None)
    with dispatch.override(kernels="reference"):
        assert dispatch.use_triton("cuda") is False


def test_forced_triton_runs_the_kernel_on_cpu(rand):
    u = rand(2, 1, 8, 8)
    args = (u, u * 0.5, 0.9, 0.1, 0.2, StepNoise(3, torch.tensor([0, 1]), 4))
    with dispatch.override(kernels="triton"):
        assert dispatch.use_triton("cpu")
        got = dispatch.reverse_step(*args)
    with dispatch.override(kernels="reference"):
        ref = dispatch.reverse_step(*args)
    assert torch.equal(got, ref)


def test_unknown_mode_is_a_one_line_error():
    with dispatch.override(kernels="fast"):
        with pytest.raises(ScalespaceError, match="SCALESPACE_KERNELS"):
            dispatch.use_triton("cpu")


def test_describe_records_mode_and_determinism(monkeypatch, tmp_path):
    monkeypatch.setenv(dispatch.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("TRITON_CACHE_DIR", "unset-below")  # so that teardown restores the original value
    monkeypatch.delenv("TRITON_CACHE_DIR")
    with dispatch.override(kernels="triton", deterministic=True):
        dispatch.kernel("reverse_step")  # loading a kernel pins the cache directory
        info = dispatch.describe("cpu")
        assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "cache")
    assert info["implementation"] == "triton" and info["deterministic"] is True
    assert info["atomics"] is False and info["fma_contraction"] is False
    assert info["cache_dir"] == str(tmp_path / "cache")
    with dispatch.override(kernels="auto", deterministic=False):
        info = dispatch.describe("cpu")
    assert info == {"implementation": "reference", "mode": "auto", "deterministic": False, "triton": dispatch.triton_version()}


def test_entry_points_fall_back_for_unsupported_inputs(rand, gen):
    x = rand(1, 1, 70, 8, dtype=torch.float64)  # larger than the DCT kernel's 64
    cut, cu0 = (torch.rand(70, 8, generator=gen, dtype=torch.float64) for _ in range(2))
    with dispatch.override(kernels="triton"):
        got = dispatch.spectral_step(x, 0.5 * x, cut, cu0, 0.0, None)
    assert torch.equal(got, dispatch.kernel("spectral_step").spectral_step_reference(x, 0.5 * x, cut, cu0, 0.0, None))


@pytest.mark.parametrize("isotropic", [True, False])
@pytest.mark.parametrize("noise_in_basis", [True, False])
def test_posterior_step_picks_the_kernel_or_torch(rand, gen, isotropic, noise_in_basis):
    """The samplers' step: the fused kernel when the kernels run, the references' torch code with the
    NoiseSource's own draws otherwise; the same numbers either way (deterministic mode)."""
    from scalespace.noise import NoiseSource

    u = rand(2, 1, 8, 8, dtype=torch.float64)
    coef = (torch.tensor(0.9, dtype=torch.float64), torch.tensor(0.2, dtype=torch.float64)) if isotropic else \
        tuple(torch.rand(8, 8, generator=gen, dtype=torch.float64) for _ in range(2))
    std = 0.3 if not noise_in_basis else (torch.tensor(0.3, dtype=torch.float64) if isotropic else torch.rand(8, 8, generator=gen, dtype=torch.float64))
    noise = NoiseSource(5, torch.tensor([3, 8]), (1, 8, 8))
    out = {}
    for mode in ("reference", "triton"):
        with dispatch.override(kernels=mode, deterministic=True):
            out[mode] = [dispatch.posterior_step(u, 0.5 * u, *coef, std, noise, step, isotropic=isotropic,
                                                 noise_in_basis=noise_in_basis) for step in (4, None)]
    for ref, got in zip(out["reference"], out["triton"]):
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)
    assert not torch.equal(out["reference"][0], out["reference"][1])  # step 4 adds noise, the last step none
    # the torch path draws the NoiseSource's noise: one (u, 0, std z) step is std z itself
    with dispatch.override(kernels="reference"):
        z = dispatch.add_noise(torch.zeros_like(u), 0.3, noise, 4)
    assert torch.equal(z, 0.3 * noise(4))


def test_oracle_takes_the_reference_for_float32_unless_forced(monkeypatch):
    """On a GPU (auto), float32 oracle products stay with cuBLAS; bf16/fp16 take the kernel; `triton` forces it."""
    with dispatch.override(kernels="auto"):
        monkeypatch.setattr(dispatch, "use_triton", lambda device: True)  # as on a CUDA device with triton
        assert dispatch.oracle_uses_triton("cuda", torch.float32) is False
        assert dispatch.oracle_uses_triton("cuda", torch.bfloat16) is True
        assert dispatch.oracle_uses_triton("cuda", torch.float16) is True
    with dispatch.override(kernels="triton"):
        assert dispatch.oracle_uses_triton("cuda", torch.float32) is True
    monkeypatch.undo()
    with dispatch.override(kernels="auto"):
        assert dispatch.oracle_uses_triton("cpu", torch.bfloat16) is False
