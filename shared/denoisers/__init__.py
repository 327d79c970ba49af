"""Denoisers: the exact oracle (SPEC section 4) and learned networks."""

from scalespace.denoisers.base import Denoiser
from scalespace.denoisers.oracle import OracleDenoiser, OracleResult, streaming_posterior

__all__ = ["Denoiser", "OracleDenoiser", "OracleResult", "streaming_posterior"]
