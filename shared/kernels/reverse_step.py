"""Fused reverse step for isotropic processes (vp, ve) and the degraded-data samplers.

One pass over memory computes

    u_s = coef_ut * u_t + coef_u0 * clip(u0_hat) + std * z(seed, k, step)

for a batch u_t, u0_hat (B, C, H, W) float32 or float64, scalar coefficients
(the Gaussian posterior for vp/ve; coef_ut = 1, no u0_hat and std =
delta for the heat/osmosis samplers' "mean + delta z"), with the noise z of
scalespace.noise generated in the kernel (shared/kernels/philox.py), so
no noise tensor is ever written or read and sample k's noise depends only on
(seed, k, step): the kernel is independent of the batch a sample is in.

Memory traffic per element: read u_t and u0_hat, write u_s: 12 bytes in
float32 (8 without u0_hat); 8 per sample id. With noise the grid is (sample,
block of the sample's values), so each program loads its sample id once and
no per-element 64-bit division recovers it; a program's values form the
(BLOCK / 4, 4) tile of BLOCK / 4 noise counters, one Philox evaluation per
four values. FLOPs: 5 per element plus the noise (per four elements 80
integer operations, two float64 logarithms and square roots, two cosines and
two sines).
Error bound: the same float operations in the same order as the reference,
so results are equal bit for bit where the compiler does not contract
a * b + c into a fused multiply-add (the interpreter, and deterministic mode
on the GPU); otherwise within 2 ulp of the result magnitude (relative 2.4e-7
in float32).
"""

from __future__ import annotations

import torch

from scalespace.kernels._triton import INTERPRETED, alloc, launch_options, next_pow2, tl, triton
from scalespace.kernels.philox import StepNoise, noise_tiling, warps_for_block

if triton is not None:
    from scalespace.kernels.philox import normal_tile

#: relative error bound against the reference (float32 results), see the docstring
REL_ERROR_BOUND = 2.4e-7


def reverse_step_reference(
    u_t: torch.Tensor,
    u0_hat: torch.Tensor | None,
    coef_ut: float | torch.Tensor,
    coef_u0: float | torch.Tensor,
    std: float | torch.Tensor,
    noise: StepNoise | torch.Tensor | None,
    clip: bool = False,
) -> torch.Tensor:
    """The step in torch (the kernel's operations, in its order).

    `noise`: the StepNoise the kernel would draw (its reference draw is added),
    or the noise z itself (the samplers' torch path, with a NoiseSource's draws).
    """
    dt = u_t.dtype
    mean = torch.as_tensor(coef_ut, dtype=torch.float64).to(dt) * u_t
    if u0_hat is not None:
        y = u0_hat.clamp(-1.0, 1.0) if clip else u0_hat
        mean = mean + torch.as_tensor(coef_u0, dtype=torch.float64).to(dt) * y
    if noise is not None:
        z = noise if isinstance(noise, torch.Tensor) else noise.reference(tuple(u_t.shape[1:]), u_t.device)
        mean = mean + torch.as_tensor(std, dtype=torch.float64).to(dt) * z
    return mean


if triton is not None:

    @triton.jit(do_not_specialize=["step", "seed_lo", "seed_hi"])
    def _reverse_step_kernel(
        out_ptr, ut_ptr, u0_ptr, coef_ptr, ids_ptr, total, per_sample,
        step, stream, seed_lo, seed_hi,
        HAS_U0: tl.constexpr, CLIP: tl.constexpr, NOISE: tl.constexpr, BLOCK: tl.constexpr,
    ):
        if NOISE:
            # grid (B, blocks per sample): the sample index is the program's, so no per-element
            # 64-bit division by per_sample (tens of instructions each on a GPU) is needed; the
            # values come as the (BLOCK // 4, 4) tile of BLOCK // 4 noise counters (four normals each)
            row = tl.program_id(0)
            n = tl.program_id(1) * (BLOCK // 4) + tl.arange(0, BLOCK // 4)
            e = n[:, None] * 4 + tl.arange(0, 4)[None, :]
            mask = e < per_sample
            offs = row.to(tl.int64) * per_sample + e
        else:
            offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
            mask = offs < total
        # coefficients arrive in float64 and are rounded here, as torch rounds a 0-dim float64 tensor
        x = tl.load(ut_ptr + offs, mask=mask, other=0.0)
        a = tl.load(coef_ptr).to(x.dtype)
        mean = a * x
        if HAS_U0:
            b = tl.load(coef_ptr + 1).to(x.dtype)
            y = tl.load(u0_ptr + offs, mask=mask, other=0.0)
            if CLIP:
                y = tl.minimum(tl.maximum(y, -1.0), 1.0)
            mean = mean + b * y
        if NOISE:
            # torch multiplies the float32 noise by a 0-dim coefficient in float32, then promotes
            c = tl.load(coef_ptr + 2).to(tl.float32)
            k = tl.zeros([BLOCK // 4], tl.int64) + tl.load(ids_ptr + row)
            z = normal_tile(n, k, step, stream, seed_lo, seed_hi)
            mean = mean + (c * z).to(mean.dtype)
        tl.store(out_ptr + offs, mean, mask=mask)


def reverse_step_triton(
    u_t: torch.Tensor,
    u0_hat: torch.Tensor | None,
    coef_ut: float | torch.Tensor,
    coef_u0: float | torch.Tensor,
    std: float | torch.Tensor,
    noise: StepNoise | None,
    clip: bool = False,
    deterministic: bool = False,
    out: torch.Tensor | None = None,
    block: int | None = None,
) -> torch.Tensor:
    """The kernel; same arguments and result as `reverse_step_reference` (`block`: values per program, a power of 2)."""
    u_t = u_t.contiguous()
    dt = u_t.dtype
    coefs = torch.tensor(
        [float(coef_ut), float(coef_u0) if u0_hat is not None else 0.0, float(std) if noise is not None else 0.0],
        dtype=torch.float64,
        device=u_t.device,
    )
    y = u0_hat.to(dt).contiguous() if u0_hat is not None else u_t
    out = alloc(u_t.shape, dt, u_t.device) if out is None else out
    total = u_t.numel()
    if total == 0:
        return out
    b = u_t.shape[0]
    ids = noise.ids.reshape(-1).to(device=u_t.device, dtype=torch.int64) if noise is not None else torch.zeros(1, dtype=torch.int64, device=u_t.device)
    if noise is not None and ids.numel() != b:
        raise ValueError(f"noise ids ({ids.numel()}) must match the batch ({b})")
    step, stream, lo, hi = noise.words() if noise is not None else (0, 0, 0, 0)
    # interpreter: big blocks (numpy is fast per element, slow per program). GPU without noise: 1024
    # values in 4 warps; with noise a program covers part of one sample (grid (B, blocks per sample)),
    # one noise counter a thread (philox.noise_tiling).
    per_sample = total // b
    warps = 4 if block is None else warps_for_block(block)
    if noise is not None:
        if block is None and not INTERPRETED:
            block, warps = noise_tiling(per_sample)
        block = block or min(max(next_pow2(per_sample), 4), 1 << 16)
        if block < 4 or block & (block - 1):
            raise ValueError(f"block must be a power of 2 >= 4 with noise, got {block}")
        grid = (b, triton.cdiv(per_sample, block))
    else:
        block = block or (min(next_pow2(total), 1 << 16) if INTERPRETED else 1024)
        grid = (triton.cdiv(total, block),)
    _reverse_step_kernel[grid](
        out, u_t, y, coefs, ids, total, per_sample, step, stream, lo, hi,
        HAS_U0=u0_hat is not None, CLIP=bool(clip), NOISE=noise is not None, BLOCK=block,
        num_warps=warps, **launch_options(deterministic),
    )
    return out
