"""Every kernel compiles for the GPUs the service runs on, without a GPU (bench/aot.py).

The interpreter tests check what the kernels compute; this checks that what a
GPU would run compiles (Triton front end, LLVM, ptxas) and keeps the
properties the tuning relies on: shared memory within the architecture's
limit, no register spills on the hot path, the osmosis stencil's occupancy,
Hopper tensor cores for the oracle.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

KERNELS = {
    "_normal_kernel", "_reverse_step_kernel", "_spectral_step_kernel", "_dct_scale_kernel", "_osmosis_kernel",
    "_moments_kernel", "_second_moment_kernel", "_histogram_kernel", "_scores_kernel", "_pv_kernel",
    "_combine_kernel", "_oracle_kernel",
}
#: the launches of the reverse loop and the oracle's default: no spills (a small stack holds libdevice's frame)
HOT = ("fused step with noise", "fused step, last step", "osmosis stencil", "oracle bfloat16, default tiles", "spectral step 28x28",
       "DCT operator 28x28")


@pytest.fixture(scope="module", params=[90, 80], ids=["sm_90", "sm_80"])
def report(request):
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    out = subprocess.run([sys.executable, "bench/aot.py", "--json", "--arch", str(request.param)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.stdout.strip(), out.stderr[-2000:]
    rep = json.loads(out.stdout.strip().splitlines()[-1])
    rep["rc"] = out.returncode
    return rep


def test_every_kernel_compiles_and_fits(report):
    assert report["failed"] == []
    assert {c["kernel"] for c in report["compiled"]} == KERNELS
    assert all(c["fits_shared"] for c in report["compiled"]), [c["case"] for c in report["compiled"] if not c["fits_shared"]]
    assert report["rc"] == 0


def test_hot_path_does_not_spill(report):
    for c in report["compiled"]:
        if c["case"] in HOT:
            assert c["local_bytes"] == 0 and c["stack_bytes"] <= 64, c


def test_osmosis_stencil_keeps_24_warps_resident(report):
    """The default tiling leaves room for 3 programs of 8 warps an SM (65,536 registers, allocated by 8)."""
    (c,) = [c for c in report["compiled"] if c["case"] == "osmosis stencil"]
    regs = -(-c["registers"] // 8) * 8
    assert c["num_warps"] * (65536 // (regs * 32 * c["num_warps"])) >= 24, c


def test_oracle_uses_the_tensor_cores(report):
    want = "HGMMA" if report["arch"] == 90 else "HMMA"
    for c in report["compiled"]:
        if c["case"].startswith("oracle bfloat16") and c["kernel"] in ("_scores_kernel", "_pv_kernel", "_oracle_kernel"):
            assert want in c["mma"], c


def test_oracle_default_weighted_sum_keeps_several_programs_an_sm(report):
    """Programs an SM by shared memory (228 KB on sm_90, 164 KB on sm_80) and registers (65,536):
    the default tiles fit 3 on sm_90 (one, before the weighted sum stepped by 64 images), 2 on sm_80."""
    smem, want = {90: (228 * 1024, 3), 80: (164 * 1024, 2)}[report["arch"]]
    (c,) = [c for c in report["compiled"] if c["case"] == "oracle bfloat16, default tiles" and c["kernel"] == "_pv_kernel"]
    regs = -(-c["registers"] // 8) * 8
    assert min(smem // c["shared_bytes"], 65536 // (regs * 32 * c["num_warps"])) >= want, c


@pytest.mark.parametrize("interpret,arch,message", [("1", "90", "TRITON_INTERPRET unset or 0"), ("0", "75", "--arch 75: use one of")])
def test_bad_settings_are_refused_with_the_fix(interpret, arch, message):
    out = subprocess.run([sys.executable, "bench/aot.py", "--arch", arch], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "TRITON_INTERPRET": interpret})
    assert out.returncode == 2 and message in out.stderr
