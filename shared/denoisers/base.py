"""What every denoiser offers the samplers: a prediction of u_0 from u_t.

Samplers only see this interface, so they cannot tell the exact oracle from a
learned network. The heat sampler (heat, osmosis) asks `reverse_mean` for the
estimate of A_s u_0, the previous state's clean mean, and turns it into the
step's mean by the rule it was given (scalespace.sampling.samplers,
`reverse_mean`: ihdm or posterior). Denoisers that predict the previous state
directly (the inverse heat dissipation objective) override `reverse_mean`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from scalespace.processes.base import Process


class Denoiser(ABC):
    """A prediction of E[u_0 | u_t] for a given process."""

    #: short name recorded in manifests ("oracle", a model id, ...)
    name: str = "denoiser"

    @abstractmethod
    def predict_u0(self, u_t: torch.Tensor, i: int, ids: torch.Tensor | None = None) -> torch.Tensor:
        """u0_hat for a batch u_t (B, C, H, W) at process index i; same shape and dtype."""

    def reverse_mean(
        self, process: Process, u_t: torch.Tensor, t: int, s: int, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The estimate of A_s u_0 from u_t (the inverse heat dissipation mean of the step t -> s): A_s u0_hat."""
        return process.marginal_mean(s, self.predict_u0(u_t, t, ids), ids)

    def digest(self) -> str:
        """A content digest of what determines the predictions (for manifests)."""
        return ""
