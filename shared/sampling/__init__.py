"""Reverse samplers built on the process interface (the noise they draw: scalespace.noise)."""

from scalespace.sampling.samplers import SAMPLERS, Sampler, StepInfo, check_sampler, sampler_for
from scalespace.sampling.schedule import respace

__all__ = ["SAMPLERS", "Sampler", "StepInfo", "check_sampler", "respace", "sampler_for"]
