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
    scale = torch.rand(70, 8, generator=gen, dtype=torch.float64)
    with dispatch.override(kernels="triton"):
        got = dispatch.dct_scale(x, scale)
    assert torch.equal(got, dispatch.kernel("dct_operator").dct_scale_reference(x, scale))


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
