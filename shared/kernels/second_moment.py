"""The D x D second moment for Fréchet distances: sum_b (x_b - c)(x_b - c)^T in float64.

x (B, D) float32/float64 (features or flattened images), center c (D,)
float64 (the batch mean or a running mean; default 0). Returns (D, D)
float64, symmetric: the comoment that scalespace.stats.moments.Moments merges.

The kernel computes only the blocks on and above the diagonal (a program
per (row block, column block) pair with row block <= column block, and per
split of the batch), loads x, subtracts c and multiplies in float64
(tl.dot in float64), and mirrors the result. Splits of the batch merge by
float64 atomic adds by default; deterministic mode uses one split per block
(no atomics), so every entry is summed in the same order on every run.

Bytes: read x once per column block: about 8 B D^2 / BLOCK in float32.
FLOPs: B D^2 (half of 2 B D^2, by symmetry), in float64.
Error: |S - ref| <= 2 (B + 16) 2^-53 sum_b |x_b - c| |x_b - c|^T (elementwise).
"""

from __future__ import annotations

import torch

from scalespace.kernels._triton import INTERPRETED, alloc, launch_options, next_pow2, tl, triton

ROWS_PER_SPLIT = 4096
U64 = 2.0**-53


def _centered(x: torch.Tensor, center: torch.Tensor | None) -> torch.Tensor:
    t = x.reshape(x.shape[0], -1).to(torch.float64)
    if center is not None:
        t = t - center.to(dtype=torch.float64, device=t.device).reshape(1, -1)
    return t


def second_moment_reference(x: torch.Tensor, center: torch.Tensor | None = None) -> torch.Tensor:
    """sum_b (x_b - c)(x_b - c)^T, (D, D) float64."""
    t = _centered(x, center)
    return t.T @ t


def error_bound(x: torch.Tensor, center: torch.Tensor | None = None) -> torch.Tensor:
    """The docstring's elementwise bound, (D, D)."""
    t = _centered(x, center).abs()
    return 2 * (t.shape[0] + 16) * U64 * (t.T @ t)


if triton is not None:

    @triton.jit
    def _second_moment_kernel(
        x_ptr, c_ptr, out_ptr, B, D, rows_per_split,
        HAS_C: tl.constexpr, ATOMIC: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr,
    ):
        pid_m = tl.program_id(0)
        pid_n = tl.program_id(1)
        pid_s = tl.program_id(2)
        if pid_m <= pid_n:
            mc = pid_m * BM + tl.arange(0, BM)
            nc = pid_n * BM + tl.arange(0, BM)
            mm = mc < D
            nm = nc < D
            if HAS_C:
                cm = tl.load(c_ptr + mc, mask=mm, other=0.0)
                cn = tl.load(c_ptr + nc, mask=nm, other=0.0)
            lo = pid_s * rows_per_split
            hi = tl.minimum(lo + rows_per_split, B)
            acc = tl.zeros([BM, BM], tl.float64)
            for r0 in range(lo, hi, BK):
                rows = r0 + tl.arange(0, BK)
                rm = rows < hi
                a = tl.load(x_ptr + rows[None, :].to(tl.int64) * D + mc[:, None], mask=mm[:, None] & rm[None, :], other=0.0).to(tl.float64)
                b = tl.load(x_ptr + rows[:, None].to(tl.int64) * D + nc[None, :], mask=rm[:, None] & nm[None, :], other=0.0).to(tl.float64)
                if HAS_C:
                    a = tl.where(mm[:, None] & rm[None, :], a - cm[:, None], 0.0)
                    b = tl.where(rm[:, None] & nm[None, :], b - cn[None, :], 0.0)
                acc = tl.dot(a, b, acc=acc, out_dtype=tl.float64)
            offs = mc[:, None].to(tl.int64) * D + nc[None, :]
            om = mm[:, None] & nm[None, :]
            if ATOMIC:
                tl.atomic_add(out_ptr + offs, acc, mask=om)
            else:
                tl.store(out_ptr + offs, acc, mask=om)


def second_moment_triton(x: torch.Tensor, center: torch.Tensor | None = None, deterministic: bool = False,
    rows_per_split: int | None = None,
) -> torch.Tensor:
    """The kernel; same result as `second_moment_reference` within `error_bound`."""
    t = x.reshape(x.shape[0], -1).contiguous()
    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32)
    b, d = t.shape
    dev = t.device
    c = center.to(dtype=torch.float64, device=dev).reshape(-1).contiguous() if center is not None else t
    # deterministic: one split per block, so no atomics; otherwise splits of the batch add atomically
    rows = max(b, 1) if deterministic else (rows_per_split or (max(b, 1) if INTERPRETED else ROWS_PER_SPLIT))
    splits = max(1, -(-b // rows))
    atomic = splits > 1
    # atomic adds need zeros; a plain store overwrites every computed block (the rest is never read)
    out = torch.zeros(d, d, dtype=torch.float64, device=dev) if atomic else alloc((d, d), torch.float64, dev)
    bm = min(max(next_pow2(d), 16), 128) if INTERPRETED else 32
    bk = min(max(next_pow2(b), 16), 256) if INTERPRETED else 32
    nb = triton.cdiv(d, bm)
    _second_moment_kernel[(nb, nb, splits)](
        t, c, out, b, d, rows, HAS_C=center is not None, ATOMIC=atomic, BM=bm, BK=bk,
        num_warps=4, **launch_options(deterministic),
    )
    blk = torch.arange(d, device=dev) // bm
    return torch.where(blk[:, None] <= blk[None, :], out, out.T)
