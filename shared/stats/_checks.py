"""Input coercion shared by the stats modules (private).

Every public function funnels user arrays through here so that the
error messages (one line, naming the field and the fix) stay uniform.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from scalespace import ScalespaceError


def as_f64(x: Any, name: str) -> torch.Tensor:
    """Detach and copy `x` (Tensor, ndarray, list or number) to a CPU float64 tensor."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    elif isinstance(x, (np.ndarray, list, tuple, float, int)):
        t = torch.as_tensor(np.asarray(x, dtype=np.float64))
    else:
        raise ScalespaceError(f"{name}: expected a tensor or array, got {type(x).__name__}; pass a torch.Tensor")
    if t.is_complex():
        raise ScalespaceError(f"{name}: complex values are not supported; pass real values")
    return t.to(device="cpu", dtype=torch.float64)


def check_finite(t: torch.Tensor, name: str) -> torch.Tensor:
    """Refuse NaN/inf: one bad sample would silently poison every statistic."""
    if not bool(torch.isfinite(t).all()):
        raise ScalespaceError(f"{name}: contains NaN or inf; drop or fix the non-finite samples first")
    return t


def batch_2d(x: Any, name: str) -> torch.Tensor:
    """(B, ...) -> finite float64 (B, D) on the CPU, one row per sample; B and D must be >= 1."""
    return _rows(as_f64(x, name), name)


def device_batch_2d(x: Any, name: str) -> torch.Tensor:
    """As batch_2d, but a tensor on an accelerator stays there, in float32 or float64 (for the statistics kernels)."""
    if not isinstance(x, torch.Tensor) or x.device.type == "cpu":
        return batch_2d(x, name)
    t = x.detach()
    if t.is_complex():
        raise ScalespaceError(f"{name}: complex values are not supported; pass real values")
    return _rows(t if t.dtype == torch.float64 else t.to(torch.float32), name)


def _rows(t: torch.Tensor, name: str) -> torch.Tensor:
    if t.ndim < 1 or t.shape[0] == 0:
        raise ScalespaceError(f"{name}: empty batch (shape {tuple(t.shape)}); pass at least one sample")
    t = t.reshape(t.shape[0], -1)
    if t.shape[1] == 0:
        raise ScalespaceError(f"{name}: samples have no values (shape {tuple(t.shape)}); pass non-empty samples")
    return check_finite(t, name)


def vector(x: Any, name: str, min_len: int = 1) -> torch.Tensor:
    """Finite float64 1-D tensor with at least `min_len` entries."""
    t = as_f64(x, name)
    if t.ndim > 1:
        raise ScalespaceError(f"{name}: expected a 1-D tensor (one value per sample), got shape {tuple(t.shape)}; flatten or reduce it")
    t = t.reshape(-1)
    if t.numel() < min_len:
        raise ScalespaceError(f"{name}: needs at least {min_len} values, got {t.numel()}; pass more samples")
    return check_finite(t, name)
