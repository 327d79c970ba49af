"""Per-image grey-value histograms (the classical scale-space measure).

x (B, ...) float32/float64, each image's values (all channels and pixels)
form one histogram of `bins` equal bins over [lo, hi); values outside fall in
the edge bins, exactly as scalespace.stats.entropy.histogram_entropy bins them
(bin = clamp(floor((x - lo) * bins / (hi - lo)), 0, bins - 1), computed in
float64). Returns counts (B, bins) int64.

One program per image loops over its values in blocks, bins them with
tl.histogram into registers and writes its row once: no atomics, so the
result is the same in default and deterministic mode, and exact (integer
counts equal the reference's).

Bytes: read x once (4 per value in float32), write 8 bins per image.
FLOPs: about 4 per value.
"""

from __future__ import annotations

import torch

from scalespace.kernels._triton import INTERPRETED, alloc, launch_options, next_pow2, tl, triton


def histogram_reference(x: torch.Tensor, bins: int = 64, lo: float = -1.0, hi: float = 1.0) -> torch.Tensor:
    """Counts (B, bins) int64, binned as histogram_entropy bins."""
    t = x.reshape(x.shape[0], -1).to(torch.float64)
    idx = ((t - lo) * (bins / (hi - lo))).floor().clamp(0, bins - 1).long()
    return torch.zeros(t.shape[0], bins, dtype=torch.int64, device=t.device).scatter_add_(1, idx, torch.ones_like(idx))


if triton is not None:

    @triton.jit
    def _histogram_kernel(x_ptr, out_ptr, consts_ptr, D, bins, NB: tl.constexpr, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        lo = tl.load(consts_ptr)  # float64, as the reference computes the bin
        scale = tl.load(consts_ptr + 1)
        top = tl.load(consts_ptr + 2)
        counts = tl.zeros([NB], tl.int32)
        for c0 in range(0, D, BLOCK):
            cols = c0 + tl.arange(0, BLOCK)
            m = cols < D
            v = tl.load(x_ptr + row.to(tl.int64) * D + cols, mask=m, other=0.0).to(tl.float64)
            idx = tl.floor((v - lo) * scale)
            idx = tl.minimum(tl.maximum(idx, 0.0), top).to(tl.int32)
            counts += tl.histogram(idx, NB, mask=m)
        b = tl.arange(0, NB)
        tl.store(out_ptr + row.to(tl.int64) * bins + b, counts.to(tl.int64), mask=b < bins)


def histogram_triton(x: torch.Tensor, bins: int = 64, lo: float = -1.0, hi: float = 1.0, deterministic: bool = False) -> torch.Tensor:
    """The kernel; equal to `histogram_reference`."""
    t = x.reshape(x.shape[0], -1).contiguous()
    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32)
    b, d = t.shape
    out = alloc((b, bins), torch.int64, t.device)
    if b == 0:
        return out
    consts = torch.tensor([float(lo), bins / (float(hi) - float(lo)), float(bins - 1)], dtype=torch.float64, device=t.device)
    block = min(next_pow2(d), 1 << 14) if INTERPRETED else min(next_pow2(d), 1024)
    _histogram_kernel[(b,)](
        t, out, consts, d, bins, NB=next_pow2(bins), BLOCK=block,
        num_warps=4, **launch_options(deterministic),
    )
    return out
