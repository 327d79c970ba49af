"""Which process indices a sampler visits: all T, or fewer through respaced transitions."""

from __future__ import annotations

from scalespace import ScalespaceError


def respace(T: int, steps: int | None) -> list[int]:
    """Indices T = i_S > ... > i_0 = 0 with S = steps (default T), evenly spaced.

    Transitions between non-adjacent indices are exact for every process (the
    closed forms hold between any s < t), so fewer steps is a coarser walk of
    the same scale-space.
    """
    steps = check_steps(T, steps)
    idx = sorted({round(k * T / steps) for k in range(steps + 1)}, reverse=True)
    return idx


def check_steps(T: int, steps: int | None) -> int:
    """The number of steps respace(T, steps) walks, or respace's refusal (without building the indices)."""
    if steps is None:
        steps = T
    if steps < 1:
        raise ScalespaceError(f"steps must be at least 1, got {steps}")
    if steps > T:
        raise ScalespaceError(f"steps ({steps}) exceeds the process's T ({T}); use steps <= {T}")
    return steps
