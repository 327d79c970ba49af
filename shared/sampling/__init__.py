"""Reverse samplers built on the process interface, and counter-based per-sample noise."""

from scalespace.sampling.noise import NoiseSource, Stream, normal
from scalespace.sampling.samplers import DEFAULT_SAMPLER, SAMPLERS, StepInfo, sampler_for
from scalespace.sampling.schedule import respace

__all__ = ["DEFAULT_SAMPLER", "NoiseSource", "SAMPLERS", "StepInfo", "Stream", "normal", "respace", "sampler_for"]
