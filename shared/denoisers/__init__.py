"""Denoisers: the exact oracle and learned networks."""

from scalespace.denoisers.base import Denoiser
from scalespace.denoisers.oracle import OracleDenoiser, OracleResult

__all__ = ["Denoiser", "OracleDenoiser", "OracleResult"]
