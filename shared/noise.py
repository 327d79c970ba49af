"""Counter-based per-sample noise: sample k's noise at step i depends only on (seed, k, i).

Philox4x32-10 (Salmon et al. 2011) keyed by the 64-bit seed, with the counter
(n, sample index k, step i, stream) for the elements e = 4n .. 4n + 3 of the
sample: its four 32-bit outputs (r0, r1, r2, r3) give four standard normals
by Box-Muller in float64, rounded to float32,

    z_4n, z_4n+1 = R(r0) cos(theta(r1)), R(r0) sin(theta(r1))
    z_4n+2, z_4n+3 = R(r2) cos(theta(r3)), R(r2) sin(theta(r3))
    R(r) = sqrt(-2 ln((r + 1) 2^-32)),   theta(r) = 2 pi r 2^-32

(one Philox evaluation and two logarithms per four normals, as curand's
normal4 does). Because
nothing depends on the batch a sample is drawn in, the same seed gives
bit-identical samples for any batch size or split into shards.

This module is the one definition of the noise (its constants, counters and
formulas) and the torch reference of the Triton twin in
shared/kernels/philox.py, which takes its constants from here and generates
the same numbers in-kernel (same rounds, same counters).

The uint32 arithmetic is emulated in int64: a 32 x 32-bit product may wrap
past 2^63, but wrapping keeps the low 64 bits, so (p >> 32) & 0xFFFFFFFF is
still the high word.
"""

from __future__ import annotations

import math
from enum import IntEnum

import torch

MASK32 = 0xFFFFFFFF
PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
TWO_PI = 2 * math.pi
INV_2_32 = 2.0**-32


class Stream(IntEnum):
    """Independent noise streams, the fourth Philox counter word."""

    STEP = 0  # per reverse step
    PRIOR = 1  # the sampler's starting noise
    GUIDANCE = 2  # osmosis guidance images
    DATA_PICK = 3  # which training image a degraded-data prior starts from
    PERTURB = 4  # robustness perturbations
    FORWARD = 5  # forward-process samples for statistics
    TRAIN = 6  # training batches


def seed_words(seed: int) -> tuple[int, int]:
    """The Philox key: the 64-bit seed split into its low and high 32-bit words."""
    return int(seed) & MASK32, (int(seed) >> 32) & MASK32


def philox4x32(c0: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor, c3: torch.Tensor, seed: int, rounds: int = 10):
    """Philox4x32 on int64 tensors holding uint32 values; returns four uint32 words (int64)."""
    lo, hi = seed_words(seed)
    k0 = torch.tensor(lo, dtype=torch.int64, device=c0.device)
    k1 = torch.tensor(hi, dtype=torch.int64, device=c0.device)
    for _ in range(rounds):
        p0 = c0 * PHILOX_M0
        p1 = c2 * PHILOX_M1
        hi0, lo0 = (p0 >> 32) & MASK32, p0 & MASK32
        hi1, lo1 = (p1 >> 32) & MASK32, p1 & MASK32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + PHILOX_W0) & MASK32
        k1 = (k1 + PHILOX_W1) & MASK32
    return c0, c1, c2, c3


def counter_words(n: torch.Tensor, ids: torch.Tensor, step: int, stream: int, seed: int):
    """The words (r0, r1, r2, r3) of counters (n, ids mod 2^32, step, stream): int64 holding uint32 values.

    n and ids are int64 tensors of one shape (counter n of sample ids).
    """
    return philox4x32(n, ids & MASK32, torch.full_like(n, int(step) & MASK32), torch.full_like(n, int(stream) & MASK32), seed)


def _check_seed(seed: int) -> int:
    if not 0 <= int(seed) < 2**63:
        raise ValueError("seed must be an integer in [0, 2^63)")
    return int(seed)


def normal(
    seed: int,
    ids: torch.Tensor,
    step: int,
    shape: tuple[int, ...],
    stream: Stream = Stream.STEP,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Standard normal float32 of shape (len(ids), *shape); row b depends only on (seed, ids[b], step, stream)."""
    seed = _check_seed(seed)
    ids = torch.as_tensor(ids, dtype=torch.int64, device=device).reshape(-1)
    d = math.prod(shape)
    q = -(-d // 4)  # counters per sample
    n = torch.arange(q, dtype=torch.int64, device=device)[None, :].expand(len(ids), q)
    k = ids[:, None].expand(len(ids), q)
    r0, r1, r2, r3 = counter_words(n, k, step, stream, seed)
    z = torch.stack(box_muller(r0, r1) + box_muller(r2, r3), dim=-1).reshape(len(ids), 4 * q)[:, :d]
    return z.to(torch.float32).reshape((len(ids),) + tuple(shape))


def box_muller(ra: torch.Tensor, rb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two float64 standard normals (R cos theta, R sin theta) from two uint32 words (int64)."""
    u1 = (ra.to(torch.float64) + 1.0) * INV_2_32  # (0, 1]
    u2 = rb.to(torch.float64) * INV_2_32  # [0, 1)
    radius = torch.sqrt(-2.0 * torch.log(u1))
    theta = TWO_PI * u2
    return radius * torch.cos(theta), radius * torch.sin(theta)


def uniform_int(seed: int, ids: torch.Tensor, high: int, stream: Stream, step: int = 0) -> torch.Tensor:
    """One integer in [0, high) per id, from the same counters (element 0)."""
    seed = _check_seed(seed)
    ids = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
    r0, r1, _, _ = counter_words(torch.zeros_like(ids), ids, step, stream, seed)
    return ((r0 << 32) | r1) % int(high)


class NoiseSource:
    """The noise of one batch of samples: the seed and the batch's sample indices."""

    def __init__(self, seed: int, ids: torch.Tensor, shape: tuple[int, int, int], device: torch.device | str = "cpu"):
        self.seed = _check_seed(seed)
        self.ids = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
        self.shape = tuple(shape)
        self.device = device

    def __call__(self, step: int, stream: Stream = Stream.STEP) -> torch.Tensor:
        return normal(self.seed, self.ids, step, self.shape, stream, device=self.device)
