"""Which process indices a sampler visits: all T, or fewer through respaced transitions."""

from __future__ import annotations

from typing import Any

from scalespace import ScalespaceError


#: How a respaced schedule picks its indices (the names and definitions of Hugging Face
#: diffusers' `timestep_spacing`); `trailing` is the default and what every sampler walked before.
TIMESTEP_SPACINGS = ("trailing", "leading", "linspace")
DEFAULT_SPACING = "trailing"


def respace(T: int, steps: int | None, spacing: str = DEFAULT_SPACING) -> list[int]:
    """Indices i_S > ... > i_0 = 0 with S = steps (default T), the last step always to index 0 (the data).

    Diffusers counts a process of T steps with 0-based timesteps d = 0..T-1, d
    the noise level of our index d + 1 (abar_{d+1}); our index 0 is the data,
    where diffusers' last step lands too. So its timesteps d are our indices
    d + 1, followed by 0:

    - trailing: d = round(arange(T, 0, -T / S)) - 1, so i_k = round(k T / S), k = S..0:
      starts at T (the default; what every sampler walked before the option);
    - leading: d = arange(S) * (T // S), descending: i = (S - 1) (T // S) + 1, ..., T // S + 1, 1, 0;
      starts below T unless S = T, from the same prior (u_T's law), as diffusers does;
    - linspace: d = round(linspace(0, T - 1, S)), descending: i = T, ..., 1, 0.

    All three are S steps (steps <= T keeps the indices distinct) and equal for S = T.
    Transitions between non-adjacent indices are exact for every process (the
    closed forms hold between any s < t), so fewer steps is a coarser walk of
    the same scale-space.
    """
    steps = check_steps(T, steps)
    if spacing == "trailing":
        idx = sorted({round(k * T / steps) for k in range(steps + 1)}, reverse=True)
    elif spacing == "leading":
        ratio = T // steps
        idx = [k * ratio + 1 for k in range(steps - 1, -1, -1)] + [0]
    elif spacing == "linspace":
        # np.linspace(0, T - 1, S): k * ((T - 1) / (S - 1)), its last value set to T - 1; round: half to even
        d = [0.0] if steps == 1 else [k * ((T - 1) / (steps - 1)) for k in range(steps)]
        if steps > 1:
            d[-1] = float(T - 1)
        idx = [round(x) + 1 for x in reversed(d)] + [0]
    else:
        raise ScalespaceError(f"timestep_spacing: unknown spacing {spacing!r}; choose one of {', '.join(TIMESTEP_SPACINGS)}")
    return idx


def check_spacing(spacing: str, process: Any) -> str:
    """`spacing` if it applies to `process`, else ScalespaceError("timestep_spacing: ...").

    The spacings are diffusers' choices for its DDPM/DDIM schedulers, so only
    the isotropic processes (vp, ve) take one; the others walk `trailing`.
    """
    if spacing not in TIMESTEP_SPACINGS:
        raise ScalespaceError(f"timestep_spacing: unknown spacing {spacing!r}; choose one of {', '.join(TIMESTEP_SPACINGS)}")
    if spacing != DEFAULT_SPACING and not process.isotropic:
        raise ScalespaceError(f"timestep_spacing: {spacing!r} applies to the isotropic processes (vp, ve) only, "
                              f"not {process.name!r}; leave it out or use {DEFAULT_SPACING!r}")
    return spacing


def check_steps(T: int, steps: int | None) -> int:
    """The number of steps respace(T, steps) walks, or respace's refusal (without building the indices)."""
    if steps is None:
        steps = T
    if steps < 1:
        raise ScalespaceError(f"steps must be at least 1, got {steps}")
    if steps > T:
        raise ScalespaceError(f"steps ({steps}) exceeds the process's T ({T}); use steps <= {T}")
    return steps
