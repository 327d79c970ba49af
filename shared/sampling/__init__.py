"""Reverse samplers built on the process interface, and counter-based per-sample noise."""

from scalespace.sampling.noise import NoiseSource, Stream, normal
from scalespace.sampling.samplers import SAMPLERS, Sampler, StepInfo, check_sampler, sampler_for
from scalespace.sampling.schedule import respace

__all__ = ["NoiseSource", "SAMPLERS", "Sampler", "StepInfo", "Stream", "check_sampler", "normal", "respace", "sampler_for"]
