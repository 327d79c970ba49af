"""Several explicit osmosis steps per launch.

The torch reference is the process's own loop, osmosis_scheme.explicit_steps
(defined once, there); this module holds the kernel that runs it.

u (..., C, H, W) float32/float64 positive, the staggered drift of
scalespace.processes.osmosis_scheme.Drift (dx (..., C, H-1, W), dy (..., C, H,
W-1), computed once per guidance image and shared by a batch when its
leading size is 1), a step size tau and a step count per image (leading
index): the kernel runs every image's steps in one launch,

    u <- u + tau A u,   (A u)_i = F_{i+1/2} - F_{i-1/2} + G_{j+1/2} - G_{j-1/2},
    F_{i+1/2} = (u_{i+1} - u_i) / h^2 - dx_{i+1/2} (u_{i+1} + u_i) / (2 h)

with no flux across the boundary, the same floating-point operations in the
same order as osmosis_scheme.explicit_step. A program owns whole images
(H, W <= 64, so an image is one tile and its halo is the no-flux boundary):
the drift stays in registers for all steps, each pixel's value too, and the
neighbours' new values are exchanged through a ping-pong scratch buffer in
L2 (loads bypass L1) with one barrier per step. When h is a power of 2 (the
default h = 1) the divisions by h^2 and 2 h become multiplications by their
exact reciprocals: the same correctly rounded results, bit for bit.

Bytes from memory: read u and the drift, write u: 8 + 8 bytes per pixel in
float32 once per launch; an unfused loop would move 8 bytes per pixel per
step (+ 8 for the drift), which is how the benchmark counts effective
bandwidth. FLOPs: about 30 per pixel per step. Error: bit-identical to the
reference where a * b + c is not contracted (interpreter, deterministic
mode); otherwise within a few ulp per step of |u| + tau |A u|.
"""

from __future__ import annotations

import torch

from scalespace.kernels._triton import INTERPRETED, alloc, launch_options, next_pow2, tl, triton
from scalespace.processes.osmosis_scheme import Drift, explicit_steps

MAX_SIDE = 64
#: pixel lanes per program on a GPU (see osmosis_explicit_triton)
LANES = 1024

#: the torch reference: `steps` (leading shape) steps of `tau` (leading + (1, 1, 1)) per image
osmosis_explicit_reference = explicit_steps


def supported(u: torch.Tensor) -> bool:
    return u.ndim >= 3 and u.shape[-1] <= MAX_SIDE and u.shape[-2] <= MAX_SIDE and u.dtype in (torch.float32, torch.float64)


if triton is not None:

    @triton.jit
    def _osmosis_kernel(
        u_ptr, out_ptr, scratch_ptr, dx_ptr, dy_ptr, tau_ptr, steps_ptr, consts_ptr,
        n_img, total, C, H, W, dx_b_stride, dy_b_stride, tau_b_stride, max_steps,
        IMGS: tl.constexpr, BLOCK_P: tl.constexpr, CACHE: tl.constexpr, POW2_H: tl.constexpr,
    ):
        img = tl.program_id(0) * IMGS + tl.arange(0, IMGS)[:, None]
        p = tl.arange(0, BLOCK_P)[None, :]
        hw = H * W
        i = p // W
        j = p - i * W
        live = img < n_img
        valid = live & (p < hw)
        has_s = valid & (i < H - 1)
        has_n = valid & (i > 0)
        has_e = valid & (j < W - 1)
        has_w = valid & (j > 0)
        base = img.to(tl.int64) * hw + p
        b = img // C
        c = img - b * C
        dxb = dx_ptr + b.to(tl.int64) * dx_b_stride + c * (H - 1) * W
        dyb = dy_ptr + b.to(tl.int64) * dy_b_stride + c * H * (W - 1)
        uc = tl.load(u_ptr + base, mask=valid, other=0.0)
        dxs = tl.load(dxb + i * W + j, mask=has_s, other=0.0)
        dxn = tl.load(dxb + (i - 1) * W + j, mask=has_n, other=0.0)
        dye = tl.load(dyb + i * (W - 1) + j, mask=has_e, other=0.0)
        dyw = tl.load(dyb + i * (W - 1) + j - 1, mask=has_w, other=0.0)
        tau = tl.load(tau_ptr + b * tau_b_stride, mask=live, other=0.0)
        nsteps = tl.load(steps_ptr + b * tau_b_stride, mask=live, other=0)
        h2 = tl.load(consts_ptr)
        two_h = tl.load(consts_ptr + 1)
        inv_h2 = tl.load(consts_ptr + 2)
        inv_two_h = tl.load(consts_ptr + 3)
        tl.store(scratch_ptr + base, uc, mask=valid)
        tl.debug_barrier()
        for k in range(0, max_steps):
            src = scratch_ptr + (k % 2) * total + base
            us = tl.load(src + W, mask=has_s, other=0.0, cache_modifier=CACHE)
            un = tl.load(src - W, mask=has_n, other=0.0, cache_modifier=CACHE)
            ue = tl.load(src + 1, mask=has_e, other=0.0, cache_modifier=CACHE)
            uw = tl.load(src - 1, mask=has_w, other=0.0, cache_modifier=CACHE)
            if POW2_H:
                # h a power of 2: 1 / h^2 and 1 / (2 h) are exact, so x * (1 / y) is the correctly
                # rounded x / y, bit for bit, without 8 IEEE divisions per pixel and step
                fxp = (us - uc) * inv_h2 - dxs * (us + uc) * inv_two_h
                fxm = (uc - un) * inv_h2 - dxn * (uc + un) * inv_two_h
                fyp = (ue - uc) * inv_h2 - dye * (ue + uc) * inv_two_h
                fym = (uc - uw) * inv_h2 - dyw * (uc + uw) * inv_two_h
            else:
                fxp = (us - uc) / h2 - dxs * (us + uc) / two_h
                fxm = (uc - un) / h2 - dxn * (uc + un) / two_h
                fyp = (ue - uc) / h2 - dye * (ue + uc) / two_h
                fym = (uc - uw) / h2 - dyw * (uc + uw) / two_h
            # the reference's accumulation order: += F_{i+1/2}, -= F_{i-1/2}, += G_{j+1/2}, -= G_{j-1/2}
            a = tl.where(has_s, fxp, 0.0)
            a = a - tl.where(has_n, fxm, 0.0)
            a = a + tl.where(has_e, fyp, 0.0)
            a = a - tl.where(has_w, fym, 0.0)
            uc = tl.where(k < nsteps, uc + tau * a, uc)
            tl.store(scratch_ptr + ((k + 1) % 2) * total + base, uc, mask=valid)
            tl.debug_barrier()
        tl.store(out_ptr + base, uc, mask=valid)


def _power_of_two(h: float, dtype: torch.dtype) -> bool:
    """Whether h^2 and 2 h, as rounded in `dtype`, are powers of 2 whose reciprocals are exact in `dtype`."""
    vals = torch.tensor([h**2, 2 * h], dtype=torch.float64).to(dtype)
    inv = 1 / vals
    return bool((torch.frexp(vals).mantissa == 0.5).all() and (vals * inv == 1).all() and torch.isfinite(inv).all())


def _per_image(x: torch.Tensor, lead: int, what: str) -> tuple[torch.Tensor, int]:
    """x broadcast over the leading index: (lead,) contiguous values and the stride (0 if shared)."""
    flat = x.reshape(-1)
    if flat.numel() == 1:
        return flat.contiguous(), 0
    if flat.numel() != lead:
        raise ValueError(f"{what} has {flat.numel()} entries for {lead} images")
    return flat.contiguous(), 1


def osmosis_explicit_triton(
    u: torch.Tensor, d: Drift, tau: torch.Tensor, steps: torch.Tensor, deterministic: bool = False, l1: bool = False,
    lanes: int | None = None, num_warps: int | None = None,
) -> torch.Tensor:
    """The kernel; same arguments and result as `osmosis_explicit_reference`.

    l1: read the neighbours' values through L1 (default caching) instead of
    bypassing it; the barrier after each step's stores makes them visible to the
    block's threads either way (CUDA: __syncthreads orders global memory within
    a block). A benchmark variant until a GPU run shows it faster.

    lanes (pixels per program, a power of 2; whole images, at least one) and
    num_warps set the tiling; any choice gives the same bits. The GPU default,
    1,024 lanes in 8 warps (4 pixels a thread), needs few enough registers that
    several programs share an SM and hide the latency of the per-step exchange
    (bench/README.md).
    """
    if not supported(u):
        raise ValueError(f"osmosis kernel handles float32/float64 (..., C, H, W) up to {MAX_SIDE} x {MAX_SIDE}")
    c, h, w = u.shape[-3:]
    lead = u.numel() // (c * h * w) if u.numel() else 0
    x = u.contiguous()
    dev, dt = u.device, u.dtype
    dx = d.dx.to(dtype=dt, device=dev).contiguous()
    dy = d.dy.to(dtype=dt, device=dev).contiguous()
    dlead = dx.numel() // max(c * (h - 1) * w, 1) if h > 1 else dy.numel() // max(c * h * (w - 1), 1)
    if dlead not in (1, lead):
        raise ValueError(f"drift for {dlead} images cannot apply to {lead}")
    tau_t = torch.as_tensor(tau, dtype=dt, device=dev)
    tau_flat, t_stride = _per_image(tau_t, lead, "tau")
    steps_flat, s_stride = _per_image(torch.as_tensor(steps, device=dev).to(torch.int32), lead, "steps")
    if t_stride != s_stride:  # one shared, one per image: give both per image
        tau_flat = tau_flat.expand(lead).contiguous() if t_stride == 0 else tau_flat
        steps_flat = steps_flat.expand(lead).contiguous() if s_stride == 0 else steps_flat
        t_stride = 1
    max_steps = int(steps_flat.max()) if steps_flat.numel() else 0
    out = alloc(x.shape, dt, dev)
    n_img = lead * c
    if n_img == 0:
        return out
    if max_steps == 0:
        return out.copy_(x)
    pow2_h = _power_of_two(d.h, dt)
    consts = torch.tensor([d.h**2, 2 * d.h, 1 / d.h**2, 1 / (2 * d.h)], dtype=torch.float64).to(dtype=dt, device=dev)
    scratch = alloc(2 * x.numel(), dt, dev)
    block_p = next_pow2(h * w)
    budget = lanes or ((1 << 16) if INTERPRETED else LANES)
    if budget & (budget - 1):
        raise ValueError(f"lanes must be a power of 2, got {budget}")
    imgs = max(1, min(budget // block_p, next_pow2(n_img)))
    warps = num_warps or (16 if imgs * block_p >= 4096 else 8 if imgs * block_p >= 1024 else 4)
    _osmosis_kernel[(triton.cdiv(n_img, imgs),)](
        x, out, scratch, dx, dy, tau_flat, steps_flat, consts, n_img, x.numel(), c, h, w,
        c * (h - 1) * w if dlead > 1 else 0, c * h * (w - 1) if dlead > 1 else 0, t_stride, max_steps,
        IMGS=imgs, BLOCK_P=block_p, CACHE="" if l1 else ".cg", POW2_H=pow2_h, num_warps=warps, **launch_options(deterministic),
    )
    return out
