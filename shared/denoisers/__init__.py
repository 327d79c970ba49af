"""Denoisers: the exact oracle (SPEC section 4) and learned networks."""

from shared.denoisers.base import Denoiser
from shared.denoisers.oracle import OracleDenoiser, OracleResult, streaming_posterior

__all__ = ["Denoiser", "OracleDenoiser", "OracleResult", "streaming_posterior"]
