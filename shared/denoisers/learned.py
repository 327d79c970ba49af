"""The learned denoiser: a trained network behind the same interface as the oracle.

Samplers call `predict_u0` (ancestral, DDIM) or `reverse_mean` (the heat
sampler, which turns that estimate of A_s u_0 into the step's mean by its
`reverse_mean` rule, ihdm or posterior, as for the oracle) and cannot tell
this from the oracle. For the one-step objective
(heat, osmosis) the network predicts u_{k-1} from u_k, so:

- `reverse_mean(t -> t-1)` is one network evaluation;
- `reverse_mean(t -> s)` with s < t - 1 (a respaced schedule) applies the
  one-step network t - s times without noise in between: the network's own
  deterministic estimate of u_s. It costs t - s evaluations, so respacing a
  one-step model saves the sampler's noise draws but not network time; the
  network was trained on single steps only, and we do not ask it for jumps it
  never saw.
- `predict_u0(u_t, t)` is that chain run down to index 0 (t evaluations).
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from scalespace.denoisers.base import Denoiser
from scalespace.denoisers.objectives import OneStepObjective, SpectralObjective, time_input
from scalespace.processes.base import Process


class LearnedDenoiser(Denoiser):
    """A network trained with `objective` for `process`; `name` is its model id.

    `extras` holds the objective's own tensors (the one-step residual scale,
    "objective.scale"), saved beside the weights.
    """

    def __init__(
        self,
        process: Process,
        net: nn.Module,
        objective: str,
        name: str = "learned",
        digest: str = "",
        extras: dict[str, torch.Tensor] | None = None,
    ):
        self.process = process
        self.net = net.eval()
        self.objective = objective
        self.name = name
        self.device = next(net.parameters()).device
        if objective == "one_step":
            scale = (extras or {}).get("objective.scale")
            self._obj: SpectralObjective | OneStepObjective = OneStepObjective(process, scale, self.device)
        else:
            self._obj = SpectralObjective(process, objective, self.device)
        self._digest = digest
        self.extras = dict(extras or {})

    def digest(self) -> str:
        if not self._digest:
            h = hashlib.sha256()
            for k, v in sorted({**self.net.state_dict(), **self.extras}.items()):
                h.update(k.encode())
                h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
            self._digest = h.hexdigest()
        return self._digest

    def _index(self, u_t: torch.Tensor, i: int) -> torch.Tensor:
        return torch.full((u_t.shape[0],), int(i), dtype=torch.int64, device=self.device)

    def _output(self, u_t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        x = self._obj.net_input(u_t, idx)
        with torch.no_grad():
            return self.net(x, time_input(self.process, idx)).float()

    def _step(self, u: torch.Tensor, k: int) -> torch.Tensor:
        """The network's u_{k-1} from u_k (one-step objective); u is float32 on the network's device."""
        idx = self._index(u, k)
        return self._obj.predict_prev(self._output(u, idx), u, idx)  # type: ignore[union-attr]

    def predict_u0(self, u_t: torch.Tensor, i: int, ids: torch.Tensor | None = None) -> torch.Tensor:
        if self.objective == "one_step":
            u = u_t.to(self.device, torch.float32)
            for k in range(int(i), 0, -1):
                u = self._step(u, k)
            return u.to(u_t.dtype)
        u = u_t.to(self.device, torch.float32)
        idx = self._index(u, i)
        u0 = self._obj.predict_u0(self._output(u, idx), u, idx)  # type: ignore[union-attr]
        return u0.to(u_t.dtype)

    def reverse_mean(
        self, process: Process, u_t: torch.Tensor, t: int, s: int, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.objective != "one_step":
            return super().reverse_mean(process, u_t, t, s, ids)
        u = u_t.to(self.device, torch.float32)
        for k in range(int(t), int(s), -1):
            u = self._step(u, k)
        return u.to(u_t.dtype)
