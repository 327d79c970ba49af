"""Triton import guard and small helpers shared by the kernel files.

Triton is an optional dependency (the `gpu` and `test` extras): without it
`triton` and `tl` are None, no kernel is defined and the dispatch always picks
the torch references. Whether a kernel runs compiled or in the interpreter is
fixed when its module is imported (TRITON_INTERPRET is read by @triton.jit),
so kernel modules are imported only by scalespace.kernels.dispatch, lazily.
"""

from __future__ import annotations

import os

import torch

try:  # pragma: no branch - depends on the installed extras
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover
    triton = None  # type: ignore[assignment]
    tl = None  # type: ignore[assignment]

#: the interpreter does not honour these; kernels cast to float32 instead
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"


_POISON = False


def set_poison(on: bool) -> None:
    """Tests: fill every buffer a kernel wrapper allocates with NaN (or -7777) before the launch,
    so an element a kernel forgets to write cannot pass by holding a stale right answer."""
    global _POISON
    _POISON = bool(on)


def alloc(shape, dtype: torch.dtype, device) -> torch.Tensor:
    """torch.empty for kernel outputs and scratch (poisoned when testing)."""
    t = torch.empty(shape, dtype=dtype, device=device)
    if _POISON:
        t.fill_(float("nan") if t.is_floating_point() else -7777)
    return t


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (Triton block shapes must be powers of two)."""
    return 1 << max(int(n) - 1, 0).bit_length()


def launch_options(deterministic: bool) -> dict:
    """Compile options for a launch: no FMA contraction in deterministic mode.

    Without contraction every a * b + c rounds twice, as the torch references
    do, so deterministic results also track the references more closely. The
    interpreter has no compile options (numpy never contracts).
    """
    if INTERPRETED or not deterministic:
        return {}
    return {"enable_fp_fusion": False}
