"""Fused reverse step for spectral processes (blurring, heat; vp/ve too), in the DCT basis.

For u_t, u0_hat (B, C, H, W) float32/float64 with H, W <= 64 and per-frequency
posterior coefficients coef_ut, coef_u0, std of shape (H, W) or (C, H, W)
one pass computes

    ancestral (noise in the basis):   u_s = idct2(coef_ut dct2(u_t) + coef_u0 dct2(clip(u0_hat)) + std z)
    heat sampler (noise in pixels):   u_s = idct2(coef_ut dct2(u_t) + coef_u0 dct2(u0_hat)) + std z

with z(seed, k, step) generated in the kernel (shared/kernels/philox.py) at
flat index e = (c H + i) W + j, the same index in either basis, so it equals
the noise tensor the reference adds. Each program takes G whole images,
zero-padded to P x Q (see shared/kernels/dct_operator.py), through two
forward transforms, the scaling and one inverse transform in registers.

Bytes: read u_t, u0_hat and write u_s: 12 bytes per pixel in float32 (the
coefficients and DCT matrices come from cache). FLOPs: 6 matrix products,
6 (P + Q) per padded pixel, plus the noise (see reverse_step.py).
Error against the reference: per image, in the 2-norm,

    |u_s - ref|_2 <= eps(n) (max|coef_ut| |u_t|_2 + max|coef_u0| |u0_hat|_2 + max|std| |z|_2)

with eps(n) of dct_operator.rel_error_bound (float32 rounding of the
transforms; the reference rounds too, in its own order).
"""

from __future__ import annotations

import torch

from scalespace.kernels._triton import alloc, launch_options, tl, triton
from scalespace.kernels.dct_operator import dot_precision, padded_dct_matrices, supported, tile_config, warps_for
from scalespace.kernels.philox import StepNoise
from scalespace.processes.dct import dct2, idct2

if triton is not None:
    from scalespace.kernels.dct_operator import dct_fwd, dct_inv, image_offsets, load_matrix
    from scalespace.kernels.philox import standard_normal


def spectral_step_reference(
    u_t: torch.Tensor,
    u0_hat: torch.Tensor,
    coef_ut: torch.Tensor,
    coef_u0: torch.Tensor,
    std: torch.Tensor | float,
    noise: StepNoise | torch.Tensor | None,
    clip: bool = False,
    noise_in_basis: bool = True,
) -> torch.Tensor:
    """The step in torch (sample_ancestral's posterior step, or the heat sampler's with noise in pixels).

    `noise`: the StepNoise the kernel would draw (its reference draw is added),
    or the noise z itself (the samplers' torch path, with a NoiseSource's draws).
    """
    dt, dev = u_t.dtype, u_t.device
    y = u0_hat.clamp(-1.0, 1.0) if clip else u0_hat
    mean = coef_ut.to(dtype=dt, device=dev) * dct2(u_t) + coef_u0.to(dtype=dt, device=dev) * dct2(y)
    if noise is None:
        return idct2(mean)
    z = noise if isinstance(noise, torch.Tensor) else noise.reference(tuple(u_t.shape[1:]), dev)
    if noise_in_basis:
        return idct2(mean + torch.as_tensor(std, dtype=torch.float64).to(dtype=dt, device=dev) * z)
    return idct2(mean) + float(std) * z


if triton is not None:

    @triton.jit(do_not_specialize=["step", "seed_lo", "seed_hi"])
    def _spectral_step_kernel(
        out_ptr, ut_ptr, u0_ptr, cut_ptr, cu0_ptr, std_ptr, ch_ptr, cw_ptr, ids_ptr,
        n_img, C, H, W, coef_c_stride, step, stream, seed_lo, seed_hi,
        CLIP: tl.constexpr, NOISE: tl.constexpr, IN_BASIS: tl.constexpr, STD_SCALAR_F32: tl.constexpr,
        G: tl.constexpr, P: tl.constexpr, Q: tl.constexpr, PREC: tl.constexpr,
    ):
        img0 = tl.program_id(0) * G
        offs, mask, img, i, j = image_offsets(img0, n_img, H, W, G, P, Q)
        x = tl.load(ut_ptr + offs, mask=mask, other=0.0)
        y = tl.load(u0_ptr + offs, mask=mask, other=0.0)
        if CLIP:
            y = tl.minimum(tl.maximum(y, -1.0), 1.0)
        ch = load_matrix(ch_ptr, P, G, False)
        cht = load_matrix(ch_ptr, P, G, True)
        cw = load_matrix(cw_ptr, Q, G, False)
        cwt = load_matrix(cw_ptr, Q, G, True)
        c = img % C
        coff = c * coef_c_stride + i * W + j
        a = tl.load(cut_ptr + coff, mask=mask, other=0.0).to(x.dtype)
        b = tl.load(cu0_ptr + coff, mask=mask, other=0.0).to(x.dtype)
        mean = a * dct_fwd(x, ch, cwt, PREC) + b * dct_fwd(y, ch, cwt, PREC)
        if NOISE:
            k = tl.load(ids_ptr + img // C, mask=img < n_img, other=0)
            e = (c * H + i) * W + j
            z = standard_normal(e, k, step, stream, seed_lo, seed_hi)
            if STD_SCALAR_F32:
                # torch: python float * float32 noise, in float32
                sz = (tl.load(std_ptr).to(tl.float32) * z).to(x.dtype)
            else:
                # torch: (H, W) coefficient in the state's dtype times the promoted noise
                sz = tl.load(std_ptr + coff, mask=mask, other=0.0).to(x.dtype) * z.to(x.dtype)
            sz = tl.where(mask, sz, 0.0)
            if IN_BASIS:
                mean = mean + sz
        out = dct_inv(mean, cht, cw, PREC)
        if NOISE:
            if not IN_BASIS:
                out = out + sz
        tl.store(out_ptr + offs, out, mask=mask)


def _coef(t: torch.Tensor | float, h: int, w: int, device) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=torch.float64).to(device)
    if t.ndim == 0:
        t = t.expand(h, w)
    return t.reshape(-1, h, w).contiguous()


def spectral_step_triton(
    u_t: torch.Tensor,
    u0_hat: torch.Tensor,
    coef_ut: torch.Tensor,
    coef_u0: torch.Tensor,
    std: torch.Tensor | float,
    noise: StepNoise | None,
    clip: bool = False,
    noise_in_basis: bool = True,
    deterministic: bool = False,
) -> torch.Tensor:
    """The kernel; same arguments as `spectral_step_reference`, result within the docstring's bound."""
    if u_t.ndim != 4 or not supported(u_t):
        raise ValueError(f"spectral step kernel needs (B, C, H, W) float32/float64 with H, W <= 64, got {tuple(u_t.shape)}")
    b, c, h, w = u_t.shape
    dev = u_t.device
    x = u_t.contiguous()
    y = u0_hat.to(u_t.dtype).contiguous()
    cut, cu0 = _coef(coef_ut, h, w, dev), _coef(coef_u0, h, w, dev)
    if cut.shape[0] != cu0.shape[0]:
        cut, cu0 = cut.expand(c, h, w).contiguous(), cu0.expand(c, h, w).contiguous()
    stride = h * w if cut.shape[0] > 1 else 0
    scalar_std = not noise_in_basis
    std_t = torch.tensor([float(std)], dtype=torch.float64, device=dev) if scalar_std else _coef(std, h, w, dev)
    if not scalar_std and std_t.shape[0] != cut.shape[0]:
        std_t, cut, cu0 = (t.expand(c, h, w).contiguous() for t in (std_t, cut, cu0))
        stride = h * w
    out = alloc(x.shape, x.dtype, dev)
    n_img = b * c
    if n_img == 0:
        return out
    ids = noise.ids.reshape(-1).to(device=dev, dtype=torch.int64) if noise is not None else torch.zeros(1, dtype=torch.int64, device=dev)
    if noise is not None and ids.numel() != b:
        raise ValueError(f"noise ids ({ids.numel()}) must match the batch ({b})")
    step, stream, lo, hi = noise.words() if noise is not None else (0, 0, 0, 0)
    g, p, q = tile_config(n_img, h, w)
    ch, cw = padded_dct_matrices(h, w, p, q, x.dtype, dev)
    _spectral_step_kernel[(triton.cdiv(n_img, g),)](
        out, x, y, cut, cu0, std_t, ch, cw, ids, n_img, c, h, w, stride, step, stream, lo, hi,
        CLIP=bool(clip), NOISE=noise is not None, IN_BASIS=bool(noise_in_basis), STD_SCALAR_F32=scalar_std,
        G=g, P=p, Q=q, PREC=dot_precision(x.dtype), num_warps=warps_for(g * p * q), **launch_options(deterministic),
    )
    return out
