"""Reverse samplers built on the process interface (the noise they draw: scalespace.noise)."""

from scalespace.sampling.samplers import (
    DEFAULT_REVERSE_MEAN,
    REVERSE_MEANS,
    SAMPLERS,
    Sampler,
    StepInfo,
    check_reverse_mean,
    check_sampler,
    sampler_for,
)
from scalespace.sampling.schedule import respace

__all__ = [
    "DEFAULT_REVERSE_MEAN", "REVERSE_MEANS", "SAMPLERS", "Sampler", "StepInfo", "check_reverse_mean", "check_sampler",
    "respace", "sampler_for",
]
