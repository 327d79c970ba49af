"""The orthonormal 2-D DCT-II (Neumann boundaries) as matrix products.

This is the one place the transform lives. For an image of shape (..., H, W)

    dct2(u) = C_H u C_W^T,    idct2(U) = C_H^T U C_W

with C_n the orthonormal DCT-II matrix, so idct2(dct2(u)) = u and
|dct2(u)| = |u|. `laplacian_eigenvalues` gives lambda(k, l) = (pi k / H)^2 +
(pi l / W)^2 for the DCT modes (pixel size 1), the rates at which heat flow
damps each mode.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch


@lru_cache(maxsize=64)
def _dct_matrix_f64(n: int) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64)[:, None]
    x = torch.arange(n, dtype=torch.float64)[None, :]
    c = torch.cos(math.pi * k * (2 * x + 1) / (2 * n)) * math.sqrt(2.0 / n)
    c[0] /= math.sqrt(2.0)
    return c


def dct_matrix(n: int, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> torch.Tensor:
    """Orthonormal DCT-II matrix C (n x n): row k is the k-th cosine mode."""
    return _dct_matrix_f64(n).to(dtype=dtype, device=device)


def dct2(u: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2-D DCT-II over the last two dims; same dtype and device."""
    ch = dct_matrix(u.shape[-2], u.dtype, u.device)
    cw = dct_matrix(u.shape[-1], u.dtype, u.device)
    return ch @ u @ cw.T


def idct2(c: torch.Tensor) -> torch.Tensor:
    """Inverse of `dct2` (its transpose, the transform being orthonormal)."""
    ch = dct_matrix(c.shape[-2], c.dtype, c.device)
    cw = dct_matrix(c.shape[-1], c.dtype, c.device)
    return ch.T @ c @ cw


@lru_cache(maxsize=64)
def laplacian_eigenvalues(h: int, w: int) -> torch.Tensor:
    """lambda(k, l) = (pi k / H)^2 + (pi l / W)^2, float64, shape (H, W)."""
    k = torch.arange(h, dtype=torch.float64)[:, None]
    l = torch.arange(w, dtype=torch.float64)[None, :]
    return (math.pi * k / h) ** 2 + (math.pi * l / w) ** 2
