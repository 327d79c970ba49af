"""Denoisers: the exact oracle (SPEC section 4) and learned networks."""

from scalespace.denoisers.base import Denoiser
from scalespace.denoisers.oracle import OracleDenoiser, OracleResult

__all__ = ["Denoiser", "OracleDenoiser", "OracleResult"]
