"""Counter-based noise in a kernel: the Triton twin of shared/sampling/noise.py.

`philox4x32_10` and `standard_normal` are @triton.jit device functions that
the step kernels call, so the noise never touches memory: the element at flat
index e of sample k at step i (stream s) is

    r0, r1, _, _ = Philox4x32-10(counter (e, k mod 2^32, i, s), key (seed lo, seed hi))
    z = float32( sqrt(-2 ln((r0 + 1) 2^-32)) cos(2 pi r1 2^-32) )   (Box-Muller in float64)

exactly as `shared.sampling.noise.normal` computes it with int64-emulated
uint32 arithmetic. The integer words are bit-identical by construction
(uint32 wrap-around, tl.umulhi for the high word). The float64 log, cos and
sqrt come from libdevice on the GPU and numpy in the interpreter; both are
within 1 ulp of float64, and a float64 result 1 ulp off rounds to a different
float32 only when it lies within 2^-52 (relative) of a float32 rounding
midpoint: about one element in 2^28, so in practice the normals are equal
bit for bit (tests compare them exactly).

`normal_triton` writes that noise to memory (for tests and the benchmark):
shapes ids (B,) int64 -> z (B, *shape) float32; moves 4 bytes per element
written plus 8 per sample id; about 10 x 8 integer operations (4 of them
32 x 32-bit products) and three float64 transcendental functions per element.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from shared.kernels._triton import alloc, next_pow2, tl, triton
from shared.sampling.noise import MASK32, Stream, normal, philox4x32

INV_2_32 = 2.0**-32
TWO_PI = 2 * math.pi


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
        """The noise as shared.sampling.noise.normal draws it, (B, *shape) float32 on `device`."""
        return normal(self.seed, self.ids.cpu(), self.step, tuple(shape), Stream(self.stream)).to(device)


def seed_words(seed: int) -> tuple[int, int]:
    """The Philox key: the 64-bit seed split into its low and high 32-bit words."""
    return int(seed) & MASK32, (int(seed) >> 32) & MASK32


def philox_reference(e: torch.Tensor, k: torch.Tensor, step: int, stream: int, seed: int):
    """The integer words (r0, r1, r2, r3) of the reference, int64 holding uint32 values."""
    return philox4x32(e, k & MASK32, torch.full_like(e, int(step) & MASK32), torch.full_like(e, int(stream) & MASK32), seed)


def normal_reference(seed: int, ids: torch.Tensor, step: int, shape: tuple[int, ...], stream: int = Stream.STEP) -> torch.Tensor:
    """The reference noise (shared.sampling.noise.normal), float32 (B, *shape), on ids' device."""
    return normal(seed, ids.cpu(), step, shape, Stream(stream)).to(ids.device)


if triton is not None:

    @triton.jit
    def philox4x32_10(c0, c1, c2, c3, k0, k1):
        """Philox4x32 with 10 rounds on uint32 blocks (Salmon et al. 2011)."""
        M0: tl.constexpr = 0xD2511F53
        M1: tl.constexpr = 0xCD9E8D57
        W0: tl.constexpr = 0x9E3779B9
        W1: tl.constexpr = 0xBB67AE85
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
    def counter_words(e, k, step, stream, seed_lo, seed_hi):
        """r0, r1 for element indices e and sample ids k (int tensors of one shape)."""
        c0 = e.to(tl.uint32)
        c1 = k.to(tl.uint32)  # the low 32 bits: k mod 2^32, as the reference
        zero = tl.zeros(c0.shape, tl.uint32)
        # scalar arguments arrive as int32 or int64 (or a constexpr): widen, then keep the low word
        c2 = (zero + step).to(tl.uint32)
        c3 = (zero + stream).to(tl.uint32)
        k0 = (zero + seed_lo).to(tl.uint32)
        k1 = (zero + seed_hi).to(tl.uint32)
        r0, r1, r2, r3 = philox4x32_10(c0, c1, c2, c3, k0, k1)
        return r0, r1

    @triton.jit
    def box_muller(r0, r1):
        """One standard normal per (r0, r1), in float64, rounded to float32."""
        u1 = (r0.to(tl.float64) + 1.0) * 2.3283064365386963e-10  # (0, 1]
        u2 = r1.to(tl.float64) * 2.3283064365386963e-10  # [0, 1)
        z = tl.sqrt(-2.0 * tl.log(u1)) * tl.cos(6.283185307179586 * u2)
        return z.to(tl.float32)

    @triton.jit
    def standard_normal(e, k, step, stream, seed_lo, seed_hi):
        r0, r1 = counter_words(e, k, step, stream, seed_lo, seed_hi)
        return box_muller(r0, r1)

    @triton.jit(do_not_specialize=["step", "seed_lo", "seed_hi"])
    def _normal_kernel(
        z_ptr, words_ptr, ids_ptr, total, per_sample, step, stream, seed_lo, seed_hi,
        WRITE_WORDS: tl.constexpr, BLOCK: tl.constexpr,
    ):
        # grid (B, blocks per sample): one sample id per program, no per-element division
        row = tl.program_id(0)
        e = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = e < per_sample
        offs = row.to(tl.int64) * per_sample + e
        k = tl.zeros([BLOCK], tl.int64) + tl.load(ids_ptr + row)
        r0, r1 = counter_words(e, k, step, stream, seed_lo, seed_hi)
        if WRITE_WORDS:
            tl.store(words_ptr + offs, r0.to(tl.int64), mask=mask)
            tl.store(words_ptr + total + offs, r1.to(tl.int64), mask=mask)
        tl.store(z_ptr + offs, box_muller(r0, r1), mask=mask)


def normal_triton(
    seed: int, ids: torch.Tensor, step: int, shape: tuple[int, ...], stream: int = Stream.STEP,
    words: bool = False, block: int | None = None,
):
    """The same noise as `normal_reference`, generated by the kernel on ids' device.

    With words=True also returns (r0, r1) as int64 (B, *shape) each, to check
    the integer words bit for bit.
    """
    ids = ids.reshape(-1).to(torch.int64).contiguous()
    d = math.prod(shape)
    total = ids.numel() * d
    z = alloc((ids.numel(),) + tuple(shape), torch.float32, ids.device)
    w = alloc(2 * total if words else 1, torch.int64, ids.device)
    if total == 0:
        return (z, w[:0], w[:0]) if words else z
    lo, hi = seed_words(seed)
    block = block or min(max(next_pow2(d), 128), 1024)
    grid = (ids.numel(), triton.cdiv(d, block))
    _normal_kernel[grid](
        z, w, ids, total, d, int(step) & MASK32, int(stream) & MASK32, lo, hi,
        WRITE_WORDS=words, BLOCK=block,
    )
    if words:
        return z, w[:total].reshape(z.shape), w[total:].reshape(z.shape)
    return z
