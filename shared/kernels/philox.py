"""Counter-based noise in a kernel: the Triton twin of shared/noise.py.

`philox4x32_10`, `normal_tile` and `standard_normal` are @triton.jit device
functions that the step kernels call, so the noise never touches memory. The
noise itself (counters, key, rounds, constants, Box-Muller) is defined once,
in scalespace.noise, the torch reference; the kernel takes its constants from
there and computes the same words with uint32 arithmetic (uint32 wrap-around,
tl.umulhi for the high word), so the integer words are bit-identical by
construction. The float64 log, cos, sin and sqrt come from libdevice on the
GPU and numpy in the interpreter; both are within 1 ulp of float64, and a
float64 result 1 ulp off rounds to a different float32 only when it lies
within 2^-52 (relative) of a float32 rounding midpoint: about one element in
2^28, so in practice the normals are equal bit for bit (tests compare them
exactly).

Two ways to call it: `normal_tile(n, ...)` gives the (N, 4) tile of the four
normals of counters n, one Philox evaluation and two logarithms per four
normals (the kernels that walk a sample's elements in order use it);
`standard_normal(e, ...)` gives element e's normal for any layout (the DCT
kernels' 2-D image tiles), at the cost of one Philox evaluation per element.

`normal_triton` writes that noise to memory (for tests and the benchmark):
shapes ids (B,) int64 -> z (B, *shape) float32; moves 4 bytes per element
written plus 8 per sample id; per four elements about 10 x 8 integer
operations (4 of them 32 x 32-bit products), two float64 logarithms and
square roots, two cosines and two sines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from scalespace.kernels._triton import alloc, tl, triton
from scalespace.noise import (
    INV_2_32,
    MASK32,
    PHILOX_M0,
    PHILOX_M1,
    PHILOX_W0,
    PHILOX_W1,
    TWO_PI,
    Stream,
    normal,
    seed_words,
)


@dataclass(frozen=True)
class StepNoise:
    """Which noise a step adds: the job's seed, the batch's sample ids (B,) int64, the step and stream."""

    seed: int
    ids: torch.Tensor
    step: int
    stream: int = int(Stream.STEP)

    def words(self) -> tuple[int, int, int, int]:
        """(step, stream, seed lo, seed hi) as the kernels take them."""
        lo, hi = seed_words(self.seed)
        return int(self.step) & MASK32, int(self.stream) & MASK32, lo, hi

    def reference(self, shape: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
        """The noise as scalespace.noise.normal draws it (on the CPU), (B, *shape) float32 on `device`."""
        return normal(self.seed, self.ids.cpu(), self.step, tuple(shape), Stream(self.stream)).to(device)


def noise_tiling(per_sample: int) -> tuple[int, int]:
    """(values a program, warps) for kernels that draw a sample's noise on a (sample, block) grid, on a GPU.

    One noise counter (four values) a thread: 128, 256 or 512 values in 1, 2 or 4
    warps, whichever pads a sample least (ties: the larger): fewer registers a
    thread than 1,024 values in 4 warps, so more warps stay resident for a
    kernel bound by its integer and float64 work, and a 28x28 sample pads to
    896 values (7 blocks of 128) instead of 1,024 (bench/README.md).
    """
    best = min((-(-per_sample // b) * b, -b) for b in (512, 256, 128))
    block = -best[1]
    return block, warps_for_block(block)


def warps_for_block(block: int) -> int:
    """One noise counter (four values) a thread: block // 128 warps, 1 to 4."""
    return min(max(block // 128, 1), 4)


if triton is not None:
    # scalespace.noise's constants, as the compile-time constants a kernel may read
    _M0 = tl.constexpr(PHILOX_M0)
    _M1 = tl.constexpr(PHILOX_M1)
    _W0 = tl.constexpr(PHILOX_W0)
    _W1 = tl.constexpr(PHILOX_W1)
    _INV_2_32 = tl.constexpr(INV_2_32)
    _TWO_PI = tl.constexpr(TWO_PI)

    @triton.jit
    def philox4x32_10(c0, c1, c2, c3, k0, k1):
        """Philox4x32 with 10 rounds on uint32 blocks (Salmon et al. 2011), as scalespace.noise.philox4x32."""
        M0: tl.constexpr = _M0
        M1: tl.constexpr = _M1
        W0: tl.constexpr = _W0
        W1: tl.constexpr = _W1
        for _ in tl.static_range(10):
            a0 = c0
            a2 = c2
            c0 = tl.umulhi(a2, M1) ^ c1 ^ k0
            c2 = tl.umulhi(a0, M0) ^ c3 ^ k1
            c1 = tl.mul(a2, M1, sanitize_overflow=False)
            c3 = tl.mul(a0, M0, sanitize_overflow=False)
            k0 = tl.add(k0, W0, sanitize_overflow=False)
            k1 = tl.add(k1, W1, sanitize_overflow=False)
        return c0, c1, c2, c3

    @triton.jit
    def counter_words(n, k, step, stream, seed_lo, seed_hi):
        """r0, r1, r2, r3 for counters n and sample ids k (int tensors of one shape)."""
        c0 = n.to(tl.uint32)
        c1 = k.to(tl.uint32)  # the low 32 bits: k mod 2^32, as the reference
        zero = tl.zeros(c0.shape, tl.uint32)
        # scalar arguments arrive as int32 or int64 (or a constexpr): widen, then keep the low word
        c2 = (zero + step).to(tl.uint32)
        c3 = (zero + stream).to(tl.uint32)
        k0 = (zero + seed_lo).to(tl.uint32)
        k1 = (zero + seed_hi).to(tl.uint32)
        return philox4x32_10(c0, c1, c2, c3, k0, k1)

    @triton.jit
    def _radius_angle(ra, rb):
        """Box-Muller's radius and angle in float64 from two uint32 words (scalespace.noise.box_muller)."""
        u1 = (ra.to(tl.float64) + 1.0) * _INV_2_32  # (0, 1]
        u2 = rb.to(tl.float64) * _INV_2_32  # [0, 1)
        return tl.sqrt(-2.0 * tl.log(u1)), u2 * _TWO_PI

    @triton.jit
    def _quad(a, b, c, d):
        """(N, 4) rows (a, b, c, d) from four (N,) tensors. join stacks along a new last axis and keeps
        it in each thread's registers, so a counter's four values stay with the thread that made them."""
        return tl.reshape(tl.join(tl.join(a, c), tl.join(b, d)), [a.shape[0], 4])

    @triton.jit
    def normals_of_words(r0, r1, r2, r3):
        """(N, 4) float32: Box-Muller on the pairs (r0, r1) and (r2, r3): (A cos, A sin, B cos, B sin)."""
        ra, ta = _radius_angle(r0, r1)
        rb, tb = _radius_angle(r2, r3)
        return _quad(ra * tl.cos(ta), ra * tl.sin(ta), rb * tl.cos(tb), rb * tl.sin(tb)).to(tl.float32)

    @triton.jit
    def normal_tile(n, k, step, stream, seed_lo, seed_hi):
        """(N, 4) float32: the normals of elements 4 n + (0, 1, 2, 3) for counters n (N,) and ids k (N,)."""
        r0, r1, r2, r3 = counter_words(n, k, step, stream, seed_lo, seed_hi)
        return normals_of_words(r0, r1, r2, r3)

    @triton.jit
    def standard_normal(e, k, step, stream, seed_lo, seed_hi):
        """Element e's normal (e, k int tensors of one shape, any layout), float32."""
        r0, r1, r2, r3 = counter_words(e >> 2, k, step, stream, seed_lo, seed_hi)
        w = e & 3
        radius, theta = _radius_angle(tl.where(w < 2, r0, r2), tl.where(w < 2, r1, r3))
        z = tl.where((w & 1) == 0, radius * tl.cos(theta), radius * tl.sin(theta))
        return z.to(tl.float32)

    @triton.jit(do_not_specialize=["step", "seed_lo", "seed_hi"])
    def _normal_kernel(
        z_ptr, words_ptr, ids_ptr, per_sample, counters, step, stream, seed_lo, seed_hi,
        WRITE_WORDS: tl.constexpr, BLOCK: tl.constexpr,
    ):
        # grid (B, blocks per sample): one sample id per program, no per-element division;
        # a program takes BLOCK // 4 counters, the (BLOCK // 4, 4) tile of their elements
        row = tl.program_id(0)
        n = tl.program_id(1) * (BLOCK // 4) + tl.arange(0, BLOCK // 4)
        e = n[:, None] * 4 + tl.arange(0, 4)[None, :]
        mask = e < per_sample
        k = tl.zeros([BLOCK // 4], tl.int64) + tl.load(ids_ptr + row)
        r0, r1, r2, r3 = counter_words(n, k, step, stream, seed_lo, seed_hi)
        if WRITE_WORDS:
            w = _quad(r0.to(tl.int64), r1.to(tl.int64), r2.to(tl.int64), r3.to(tl.int64))
            at = (row.to(tl.int64) * counters + n[:, None]) * 4 + tl.arange(0, 4)[None, :]
            tl.store(words_ptr + at, w, mask=n[:, None] < counters)
        z = normals_of_words(r0, r1, r2, r3)
        tl.store(z_ptr + row.to(tl.int64) * per_sample + e, z, mask=mask)

    @triton.jit(do_not_specialize=["step", "seed_lo", "seed_hi"])
    def _normal_any_layout_kernel(z_ptr, ids_ptr, per_sample, total, step, stream, seed_lo, seed_hi, BLOCK: tl.constexpr):
        # standard_normal: one counter per element (a test of the per-element path the DCT kernels use)
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < total
        row = offs // per_sample
        k = tl.load(ids_ptr + row, mask=mask, other=0)
        tl.store(z_ptr + offs, standard_normal(offs - row * per_sample, k, step, stream, seed_lo, seed_hi), mask=mask)


def normal_triton(
    seed: int, ids: torch.Tensor, step: int, shape: tuple[int, ...], stream: int = Stream.STEP,
    words: bool = False, block: int | None = None, any_layout: bool = False,
):
    """The same noise as scalespace.noise.normal, generated by the kernel on ids' device.

    With words=True also returns the Philox words as int64 (B, ceil(D / 4), 4),
    to check them bit for bit. any_layout=True generates each element with
    `standard_normal` (one counter per element, the DCT kernels' path) instead
    of `normal_tile`.
    """
    ids = ids.reshape(-1).to(torch.int64).contiguous()
    d = math.prod(shape)
    total = ids.numel() * d
    counters = -(-d // 4)
    z = alloc((ids.numel(),) + tuple(shape), torch.float32, ids.device)
    w = alloc((ids.numel(), counters, 4) if words else 1, torch.int64, ids.device)
    if total == 0:
        return (z, w) if words else z
    lo, hi = seed_words(seed)
    if any_layout:
        blk = block or 1024
        _normal_any_layout_kernel[(triton.cdiv(total, blk),)](z, ids, d, total, int(step) & MASK32, int(stream) & MASK32, lo, hi, BLOCK=blk)
        return z
    block = block or noise_tiling(d)[0]
    if block < 4 or block & (block - 1):
        raise ValueError(f"block must be a power of 2 >= 4, got {block}")
    grid = (ids.numel(), triton.cdiv(d, block))
    _normal_kernel[grid](
        z, w, ids, d, counters, int(step) & MASK32, int(stream) & MASK32, lo, hi,
        WRITE_WORDS=words, BLOCK=block, num_warps=warps_for_block(block),
    )
    return (z, w) if words else z
