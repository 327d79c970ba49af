"""Streaming per-value sums and sums of squares over a batch, in float64.

x (B, ...) float32/float64, each sample flattened to D values; an optional
center c (D,) float64 (e.g. a running mean: sums of (x - c) avoid the loss of
digits that raw sums of squares suffer when the mean is large against the
spread). Returns sum_b (x_b - c) and sum_b (x_b - c)^2, both (D,) float64:
what mergeable per-pixel mean/variance statistics need.

Each program owns BLOCK_D values and a split of ROWS_PER_SPLIT rows (a
function of B only), converts to float64 on load and accumulates in float64,
each of its BLOCK_B row slots apart, reducing the slots once at the end.
The splits are merged by float64 atomic adds by default, or, in
deterministic mode, written as partials and summed in split order.

Bytes: read x once (4 B D in float32), write 16 D. FLOPs: 4 per element.
Error: float64 accumulation of B terms: |sum - ref| <= 2 (B + 16) 2^-53 sum_b |x_b - c|
(and the same for the squares), far below float32 input precision.
"""

from __future__ import annotations

import torch

from scalespace.kernels._triton import INTERPRETED, alloc, launch_options, next_pow2, tl, triton

ROWS_PER_SPLIT = 2048
U64 = 2.0**-53


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def pixel_moments_reference(x: torch.Tensor, center: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum (D,), sum of squares (D,)) of x - center over the batch, float64."""
    t = _flat(x).to(torch.float64)
    if center is not None:
        t = t - center.to(dtype=torch.float64, device=t.device).reshape(1, -1)
    return t.sum(dim=0), (t * t).sum(dim=0)


def error_bound(x: torch.Tensor, center: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The docstring's bounds for the two outputs, (D,) each."""
    t = _flat(x).to(torch.float64)
    if center is not None:
        t = t - center.to(dtype=torch.float64, device=t.device).reshape(1, -1)
    g = 2 * (t.shape[0] + 16) * U64
    return g * t.abs().sum(dim=0), g * (t * t).sum(dim=0)


if triton is not None:

    @triton.jit
    def _moments_kernel(
        x_ptr, c_ptr, s_ptr, q_ptr, B, D, rows_per_split,
        HAS_C: tl.constexpr, ATOMIC: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr,
    ):
        pid_d = tl.program_id(0)
        pid_s = tl.program_id(1)
        cols = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
        cmask = cols < D
        if HAS_C:
            c = tl.load(c_ptr + cols, mask=cmask, other=0.0)
        lo = pid_s * rows_per_split
        hi = tl.minimum(lo + rows_per_split, B)
        # (BLOCK_B, BLOCK_D) float64 accumulators, reduced across rows once after the loop: no
        # cross-thread reduction per tile of rows
        s2 = tl.zeros([BLOCK_B, BLOCK_D], tl.float64)
        q2 = tl.zeros([BLOCK_B, BLOCK_D], tl.float64)
        for r0 in range(lo, hi, BLOCK_B):
            rows = r0 + tl.arange(0, BLOCK_B)
            m = (rows < hi)[:, None] & cmask[None, :]
            v = tl.load(x_ptr + rows[:, None].to(tl.int64) * D + cols[None, :], mask=m, other=0.0).to(tl.float64)
            if HAS_C:
                v = tl.where(m, v - c[None, :], 0.0)
            s2 += v
            q2 += v * v
        s = tl.sum(s2, axis=0)
        q = tl.sum(q2, axis=0)
        if ATOMIC:
            tl.atomic_add(s_ptr + cols, s, mask=cmask)
            tl.atomic_add(q_ptr + cols, q, mask=cmask)
        else:
            tl.store(s_ptr + pid_s * D + cols, s, mask=cmask)
            tl.store(q_ptr + pid_s * D + cols, q, mask=cmask)


def pixel_moments_triton(
    x: torch.Tensor, center: torch.Tensor | None = None, deterministic: bool = False,
    rows_per_split: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel; same result as `pixel_moments_reference` within `error_bound`."""
    t = _flat(x).contiguous()
    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32)
    b, d = t.shape
    dev = t.device
    c = center.to(dtype=torch.float64, device=dev).reshape(-1).contiguous() if center is not None else t
    rows = rows_per_split or (ROWS_PER_SPLIT if not INTERPRETED else max(b, 1))
    splits = max(1, -(-b // rows))
    atomic = not deterministic and splits > 1
    if atomic:
        s = torch.zeros(d, dtype=torch.float64, device=dev)
        q = torch.zeros(d, dtype=torch.float64, device=dev)
    else:
        s = alloc((splits, d), torch.float64, dev)
        q = alloc((splits, d), torch.float64, dev)
    block_d = min(next_pow2(d), 1024) if INTERPRETED else 64
    block_b = min(next_pow2(b), 256) if INTERPRETED else 32
    _moments_kernel[(triton.cdiv(d, block_d), splits)](
        t, c, s, q, b, d, rows, HAS_C=center is not None, ATOMIC=atomic, BLOCK_B=block_b, BLOCK_D=block_d,
        num_warps=4, **launch_options(deterministic),
    )
    if atomic:
        return s, q
    return s.sum(dim=0), q.sum(dim=0)
