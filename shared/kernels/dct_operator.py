"""DCT-domain operator: y = idct2(scale * dct2(x)), one fused pass per image.

x (N, C, H, W) float32 or float64 with 1 <= H, W <= 64 (larger images fall
back to the reference); scale (H, W) or (C, H, W), real, in the DCT basis
(alpha_i of a spectral process, exp(-lambda tau) of the heat semigroup). Each
program loads G whole images, zero-pads them to P x Q (powers of two, at
least 16, the smallest tensor-core tile), and applies the orthonormal DCT-II
as matrix products C_H x C_W^T, the scaling, and the inverse C_H^T X C_W, in
registers. The padded rows and columns of the DCT matrices are zero, so the
padding never leaks into the result.

Bytes: read x and write y: 8 bytes per pixel in float32 (plus the scale,
read once per program from cache). FLOPs: 4 matrix products, 4 (P + Q) per
padded pixel (about 256 per pixel at 28 x 28 padded to 32 x 32). Products run
in full float32 ("ieee", no TF32) so the result is exact against the float64
reference up to float32 rounding: for each image,

    |y - y_ref|_2 <= eps(n) * max|scale| * |x|_2,   eps(n) = 6 (n + 2) u sqrt(n),

n = max(H, W), u = 2^-24 (float32) or 2^-53 (float64); about 1e-4 at n = 64
(the typical error is 1e-7).

The jit helpers `dct_fwd` and `dct_inv` are shared with the fused spectral
step (shared/kernels/spectral_step.py).
"""

from __future__ import annotations

import math

import torch

from scalespace.kernels._triton import INTERPRETED, alloc, launch_options, next_pow2, tl, triton
from scalespace.processes.dct import dct2, dct_matrix, idct2

MAX_SIDE = 64


def rel_error_bound(n: int, dtype: torch.dtype) -> float:
    """eps(n) of the docstring: per-image 2-norm error relative to max|scale| |x|_2."""
    u = 2.0**-24 if dtype == torch.float32 else 2.0**-53
    return 6 * (n + 2) * u * math.sqrt(n)


def dct_scale_reference(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """idct2(scale * dct2(x)) in x's dtype (scalespace.processes.dct)."""
    return idct2(scale.to(dtype=x.dtype, device=x.device) * dct2(x))


def padded_dct_matrices(h: int, w: int, p: int, q: int, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """C_H (P x P) and C_W (Q x Q), orthonormal DCT-II in the top-left corner, zeros elsewhere."""
    ch = torch.zeros(p, p, dtype=dtype, device=device)
    cw = torch.zeros(q, q, dtype=dtype, device=device)
    ch[:h, :h] = dct_matrix(h, dtype, device)
    cw[:w, :w] = dct_matrix(w, dtype, device)
    return ch.contiguous(), cw.contiguous()


def tile_config(n_img: int, h: int, w: int) -> tuple[int, int, int]:
    """(G, P, Q): images per program and padded sides; depends on the shape only."""
    p, q = max(16, next_pow2(h)), max(16, next_pow2(w))
    budget = (1 << 16) if INTERPRETED else 2048  # elements per program (registers: ~10 such tiles live)
    g = max(1, min(budget // (p * q), next_pow2(n_img)))
    return g, p, q


def warps_for(elements: int) -> int:
    """Warps for a program of `elements` padded pixels: 16 from 2,048 up.

    Fewer warps leave each thread more of the program's tiles, and the spectral
    step then runs out of registers and spills (the compiled figures:
    bench/README.md, from `python bench/aot.py`).
    """
    return 16 if elements >= 2048 else 8 if elements >= 1024 else 4


if triton is not None:

    @triton.jit
    def load_matrix(ptr, P: tl.constexpr, G: tl.constexpr, TRANSPOSE: tl.constexpr):
        """A P x P matrix broadcast over G images as a (G, P, P) block (stride 0 on g)."""
        g = tl.arange(0, G)[:, None, None]
        r = tl.arange(0, P)[None, :, None]
        c = tl.arange(0, P)[None, None, :]
        if TRANSPOSE:
            offs = c * P + r + g * 0
        else:
            offs = r * P + c + g * 0
        return tl.load(ptr + offs)

    @triton.jit
    def dct_fwd(x, ch, cwt, PREC: tl.constexpr):
        """C_H x C_W^T for x (G, P, Q); ch (G, P, P), cwt (G, Q, Q) = C_W^T."""
        a = tl.dot(ch, x, input_precision=PREC, out_dtype=x.dtype)
        return tl.dot(a, cwt, input_precision=PREC, out_dtype=x.dtype)

    @triton.jit
    def dct_inv(c, cht, cw, PREC: tl.constexpr):
        """C_H^T c C_W for c (G, P, Q)."""
        a = tl.dot(cht, c, input_precision=PREC, out_dtype=c.dtype)
        return tl.dot(a, cw, input_precision=PREC, out_dtype=c.dtype)

    @triton.jit
    def image_offsets(img0, n_img, H, W, G: tl.constexpr, P: tl.constexpr, Q: tl.constexpr):
        """Offsets (G, P, Q) of G consecutive (H, W) images from image img0, and the mask of real pixels."""
        g = tl.arange(0, G)[:, None, None]
        i = tl.arange(0, P)[None, :, None]
        j = tl.arange(0, Q)[None, None, :]
        img = img0 + g
        offs = img.to(tl.int64) * (H * W) + i * W + j
        mask = (img < n_img) & (i < H) & (j < W)
        return offs, mask, img, i, j

    @triton.jit
    def _dct_scale_kernel(
        out_ptr, x_ptr, scale_ptr, ch_ptr, cw_ptr, n_img, C, H, W, scale_c_stride,
        G: tl.constexpr, P: tl.constexpr, Q: tl.constexpr, PREC: tl.constexpr,
    ):
        img0 = tl.program_id(0) * G
        offs, mask, img, i, j = image_offsets(img0, n_img, H, W, G, P, Q)
        x = tl.load(x_ptr + offs, mask=mask, other=0.0)
        ch = load_matrix(ch_ptr, P, G, False)
        cht = load_matrix(ch_ptr, P, G, True)
        cw = load_matrix(cw_ptr, Q, G, False)
        cwt = load_matrix(cw_ptr, Q, G, True)
        X = dct_fwd(x, ch, cwt, PREC)
        c = img % C
        s = tl.load(scale_ptr + c * scale_c_stride + i * W + j, mask=mask, other=0.0).to(x.dtype)
        y = dct_inv(s * X, cht, cw, PREC)
        tl.store(out_ptr + offs, y, mask=mask)


def supported(x: torch.Tensor) -> bool:
    """Shapes and dtypes the kernel handles (the dispatch uses the reference otherwise)."""
    return x.ndim >= 2 and x.shape[-1] <= MAX_SIDE and x.shape[-2] <= MAX_SIDE and x.dtype in (torch.float32, torch.float64)


def dot_precision(dtype: torch.dtype) -> str:
    # full float32 products: TF32 would cost 1e-3 relative, far outside the stated bound
    return "ieee"


def dct_scale_triton(x: torch.Tensor, scale: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
    """The kernel; same result as `dct_scale_reference` within `rel_error_bound`."""
    if not supported(x):
        raise ValueError(f"dct kernel handles float32/float64 images up to {MAX_SIDE} x {MAX_SIDE}, got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    c = x.shape[-3] if x.ndim >= 3 else 1
    xc = x.contiguous()
    n_img = xc.numel() // (h * w)
    scale = scale.to(dtype=torch.float64, device=x.device)
    if scale.ndim == 2:
        scale, sc = scale.contiguous(), 0
    else:
        scale = scale.reshape(-1, h, w).contiguous()
        sc = h * w if scale.shape[0] > 1 else 0
    out = alloc(xc.shape, xc.dtype, xc.device)
    if n_img == 0:
        return out
    g, p, q = tile_config(n_img, h, w)
    ch, cw = padded_dct_matrices(h, w, p, q, x.dtype, x.device)
    _dct_scale_kernel[(triton.cdiv(n_img, g),)](
        out, xc, scale, ch, cw, n_img, c, h, w, sc,
        G=g, P=p, Q=q, PREC=dot_precision(x.dtype), num_warps=warps_for(g * p * q), **launch_options(deterministic),
    )
    return out
