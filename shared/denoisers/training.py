"""Training a U-Net denoiser for one process: batches, loss, EMA, state for resuming.

One `Trainer.train_step` draws a batch (training images, process indices i
uniform in 1..T, Gaussian noise), builds the objective's input and target
(scalespace.denoisers.objectives), takes an Adam step with gradient clipping
(bf16 autocast on a GPU) and updates an exponential moving average of the
weights, which is what gets sampled and saved.

Determinism: step k draws its batch from a torch.Generator seeded by
Philox(seed, k) (scalespace.noise, Stream.TRAIN), the network is
initialised from the seed, and the learning rate is a function of k. So a
run resumed from the state saved after step k (weights, EMA, Adam moments,
loss curve) takes exactly the steps an uninterrupted run would.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from scalespace import ScalespaceError
from scalespace.denoisers.learned import LearnedDenoiser
from scalespace.denoisers.objectives import (
    Coefficients,
    OneStepObjective,
    SpectralObjective,
    one_step_scale,
    time_input,
)
from scalespace.denoisers.unet import UNet, UNetConfig
from scalespace.processes.base import DriftDiffusionProcess, LinearGaussianProcess, Process
from scalespace.noise import Stream, uniform_int

#: forward means of osmosis are precomputed for the whole training set below this many floats
OSMOSIS_TABLE_MAX = 2**28
#: training images that estimate the one-step residual scale
SCALE_IMAGES = 1024


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; `steps` is the total, `warmup_steps` ramp the learning rate up linearly."""

    steps: int
    batch_size: int
    lr: float
    ema_decay: float
    seed: int = 0
    warmup_steps: int = 100
    grad_clip: float = 1.0
    amp: bool = True  # bf16 autocast, on CUDA only
    log_every: int = 10


def build_network(process: Process, config: UNetConfig, seed: int) -> UNet:
    """A freshly initialised U-Net for `process` whose weights depend only on (config, seed)."""
    cin, cout = process.network_channels()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet(cin, config, cout)


@dataclass
class LossCurve:
    """Mean training loss over every `every` steps (and the last, partial window): points (step, loss).

    Losses are summed as tensors and read back once per window, so a GPU is
    not made to wait for the host at every step.
    """

    every: int
    points: list[tuple[int, float]] = field(default_factory=list)
    _sum: float | torch.Tensor = 0.0
    _count: int = 0

    def add(self, step: int, loss: torch.Tensor | float, last: bool = False) -> None:
        self._sum = self._sum + loss
        self._count += 1
        if step % self.every == 0 or last:
            mean = float(self._sum) / self._count
            if not math.isfinite(mean):
                raise ScalespaceError(f"training diverged by step {step} (loss {mean}); lower lr")
            self.points.append((step, mean))
            self._sum, self._count = 0.0, 0

    def last(self) -> float | None:
        return self.points[-1][1] if self.points else None

    def to_dict(self) -> dict[str, Any]:
        return {"every": self.every, "points": [list(p) for p in self.points], "sum": float(self._sum),
                "count": self._count}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LossCurve:
        c = cls(every=int(d["every"]), points=[(int(s), float(v)) for s, v in d["points"]])
        c._sum, c._count = float(d["sum"]), int(d["count"])
        return c


class ForwardMeans:
    """A_k u_0 of training images at per-sample indices k (heat: closed form; osmosis: a table)."""

    def __init__(self, process: Process, images: torch.Tensor, device: torch.device):
        self.process = process
        self.images = images
        self.table: torch.Tensor | None = None
        if isinstance(process, LinearGaussianProcess):
            self.alpha = Coefficients(process, device).alpha
        elif isinstance(process, DriftDiffusionProcess) and images.numel() * (process.T + 1) <= OSMOSIS_TABLE_MAX:
            means = process.marginal_means_all(images.to(torch.float64))
            self.table = torch.stack([m.to(torch.float32) for m in means]).to(device)

    def __call__(self, idx: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W): A_{k_b} u_0[idx_b]."""
        return self.pair(idx, k, k)[0]

    def pair(self, idx: torch.Tensor, k: torch.Tensor, j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A_k u_0[idx] and A_j u_0[idx] (per sample), from one trajectory when computed on the fly."""
        if self.table is not None:
            return self.table[k, idx], self.table[j, idx]
        u0 = self.images[idx]
        p = self.process
        if isinstance(p, LinearGaussianProcess):
            c = p.to_basis(u0)
            return p.from_basis(self.alpha[k] * c), p.from_basis(self.alpha[j] * c)
        assert isinstance(p, DriftDiffusionProcess)
        means = p.marginal_means_all(u0.to(torch.float64))
        stacked = torch.stack([m.to(torch.float32) for m in means])  # (K+1, B, C, H, W)
        rows = torch.arange(len(idx), device=k.device)
        return stacked[k, rows], stacked[j, rows]


class Trainer:
    """Fits a U-Net to `images` (n, C, H, W) in [-1, 1] for `process` with `objective`."""

    def __init__(
        self,
        process: Process,
        images: torch.Tensor,
        network: UNetConfig,
        objective: str,
        config: TrainConfig,
        device: torch.device | str = "cpu",
    ):
        if images.ndim != 4 or tuple(images.shape[1:]) != tuple(process.shape):
            raise ScalespaceError(
                f"data: training images have shape {tuple(images.shape[1:])}, the process {process.shape}"
            )
        if config.steps < 1 or config.batch_size < 1:
            raise ScalespaceError("steps and batch_size must be at least 1")
        self.process = process
        self.device = torch.device(device)
        self.images = images.to(self.device, torch.float32)
        self.network_config = network
        self.objective = objective
        self.config = config
        self.net = build_network(process, network, config.seed).to(self.device)
        self.ema = copy.deepcopy(self.net).requires_grad_(False)
        # fused Adam: one kernel for all parameters (CPU and CUDA), 15% of a tiny net's step on a CPU
        self.opt = torch.optim.Adam(self.net.parameters(), lr=config.lr, fused=True)
        self.step = 0
        self.curve = LossCurve(every=config.log_every)
        self.amp = config.amp and self.device.type == "cuda"
        if objective == "one_step":
            self.means: ForwardMeans | None = ForwardMeans(process, self.images, self.device)
            n = min(len(self.images), SCALE_IMAGES)
            # a table for the first images when the whole set has none: one trajectory instead of K
            few = self.means if self.means.table is not None or process.spectral else (
                ForwardMeans(process, self.images[:n], self.device))
            idx = torch.arange(n, device=self.device)
            self.extras = {"objective.scale": one_step_scale(process, few.pair, idx).cpu()}
            self.obj: SpectralObjective | OneStepObjective = OneStepObjective(
                process, self.extras["objective.scale"], self.device
            )
        else:
            self.extras = {}
            self.obj = SpectralObjective(process, objective, self.device)
            self.means = None

    # --- one step ------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        """Linear warm-up, then cosine decay to zero at the last step (step counts from 1)."""
        c = self.config
        if step <= c.warmup_steps:
            return c.lr * step / max(c.warmup_steps, 1)
        frac = (step - c.warmup_steps) / max(c.steps - c.warmup_steps, 1)
        return c.lr * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(network input, indices i (B,), target) of step `step`, from Philox(seed, step) only.

        The draws come from a generator on the training device (no host-to-device
        copies), so they are reproducible per device type, not across CPU and GPU.
        """
        c, p = self.config, self.process
        seed = int(uniform_int(c.seed, torch.tensor([step]), 2**62, Stream.TRAIN)[0])
        g = torch.Generator(device=self.device).manual_seed(seed)
        b, dev = c.batch_size, self.device
        idx = torch.randint(len(self.images), (b,), generator=g, device=dev)
        i = torch.randint(1, p.T + 1, (b,), generator=g, device=dev)
        eps = torch.randn((b,) + tuple(p.shape), generator=g, device=dev)
        if self.means is not None:
            mean_k, mean_prev = self.means.pair(idx, i, i - 1)
            x, target = self.obj.training_pair(mean_k, mean_prev, eps, i)  # type: ignore[call-arg]
        else:
            x, target = self.obj.training_pair(self.images[idx], i, eps)  # type: ignore[call-arg]
        return x, i, target

    def train_step(self) -> torch.Tensor:
        """One optimisation step; returns its loss (a detached scalar tensor on the training device)."""
        step = self.step + 1
        x, i, target = self.batch(step)
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(step)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=self.amp):
            out = self.net(x, time_input(self.process, i))
        loss = torch.mean((self.obj.head(out.float()) - target) ** 2)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.net.parameters(), self.config.grad_clip)
        self.opt.step()
        self._update_ema(step)
        self.step = step
        loss = loss.detach()
        self.curve.add(step, loss, last=step == self.config.steps)
        return loss

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        # Early on the average would be dominated by the random init; ramp the decay up.
        decay = min(self.config.ema_decay, (1 + step) / (10 + step))
        ema = list(self.ema.parameters())
        torch._foreach_lerp_(ema, [p.detach() for p in self.net.parameters()], 1.0 - decay)

    # --- what gets sampled and saved -------------------------------------------------------
    def denoiser(self, name: str = "learned", ema: bool = True) -> LearnedDenoiser:
        """A denoiser over a copy of the EMA (or raw) network, in eval mode."""
        net = copy.deepcopy(self.ema if ema else self.net).eval()
        return LearnedDenoiser(self.process, net, self.objective, name=name, extras=self.extras)

    def model_tensors(self) -> dict[str, torch.Tensor]:
        """What a checkpoint of the model holds: the EMA weights and the objective's extras (CPU)."""
        out = {k: v.detach().cpu() for k, v in self.ema.state_dict().items()}
        out.update(self.extras)
        return out

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything a resumed run needs: tensors (for safetensors) and JSON metadata."""
        tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in self.ema.state_dict().items()})
        for pidx, st in self.opt.state_dict()["state"].items():
            for key, v in st.items():
                tensors[f"opt.{pidx}.{key}"] = torch.as_tensor(v).detach().cpu().contiguous()
        meta = {"step": self.step, "curve": self.curve.to_dict(), "config": asdict(self.config)}
        return tensors, meta

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Restore a state saved by `state()` (same network, objective and config)."""
        if meta.get("config") != asdict(self.config):
            raise ScalespaceError("the saved training state was made with other settings; start a new job")
        dev = self.device
        self.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        self.ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, pidx, key = k.split(".", 2)
                state.setdefault(int(pidx), {})[key] = v if key == "step" else v.to(dev)
        self.opt.load_state_dict({"state": state, "param_groups": self.opt.state_dict()["param_groups"]})
        self.step = int(meta["step"])
        self.curve = LossCurve.from_dict(meta["curve"])
