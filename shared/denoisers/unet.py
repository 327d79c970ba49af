"""A small time-conditioned U-Net (Ho et al. 2020, shrunk) and its presets.

The network maps (x, t) to an image of the same shape: x is (B, C, H, W)
float, t is (B,) float in [0, 1] (the process index divided by T). It has
residual blocks with group norm and a time embedding added inside each block,
a sinusoidal embedding of t, optional self-attention at the lowest
resolution, and widths and depth from `UNetConfig`. Any H, W work: upsampling
goes to the size of the matching skip connection, so odd sizes (7x7) are fine.

The last convolution starts at zero, so an untrained network outputs 0 (for
a residual objective: "change nothing"). Presets size it for the data sets
that ship (`PRESETS`); each states the training it was tuned for and how long
that takes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn


class UNetConfig(BaseModel):
    """Widths and depth of the U-Net; every field is part of a checkpoint's model card."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: int = Field(32, ge=4, le=1024, description="width of the first level")
    channel_mults: tuple[int, ...] = Field((1, 2), min_length=1, max_length=6, description="width multiplier per level")
    num_res_blocks: int = Field(1, ge=1, le=8, description="residual blocks per level")
    attention: bool = Field(False, description="self-attention at the lowest resolution")
    heads: int = Field(1, ge=1, le=16, description="attention heads")
    groups: int = Field(8, ge=1, le=64, description="group norm groups (reduced to divide each width)")
    time_dim: int | None = Field(None, ge=4, description="time embedding width; default 4 x channels")


def _norm(ch: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, ch), ch)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of t (B,) in [0, 1] (scaled by 1000, as for DDPM indices): (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, tdim: int, groups: int):
        super().__init__()
        self.norm1 = _norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(tdim, cout)
        self.norm2 = _norm(cout, groups)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(temb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the pixels of a (small) feature map, with a residual."""

    def __init__(self, ch: int, heads: int, groups: int):
        super().__init__()
        self.heads = heads if ch % heads == 0 else 1
        self.norm = _norm(ch, groups)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """eps / v / residual predictor: (x (B, C_in, H, W), t (B,)) -> (B, C_out, H, W).

    C_out defaults to C_in; extra input channels carry conditioning (the
    osmosis guidance), not image values.
    """

    def __init__(self, in_channels: int, config: UNetConfig | None = None, out_channels: int | None = None):
        super().__init__()
        cfg = config or UNetConfig()
        self.config = cfg
        self.in_channels = in_channels
        self.out_channels = out_channels or in_channels
        ch, g = cfg.channels, cfg.groups
        tdim = cfg.time_dim or 4 * ch
        self.time = nn.Sequential(nn.Linear(ch, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)

        widths = [ch * m for m in cfg.channel_mults]
        self.down = nn.ModuleList()
        skips = [ch]
        cur = ch
        for level, w in enumerate(widths):
            for _ in range(cfg.num_res_blocks):
                self.down.append(ResBlock(cur, w, tdim, g))
                cur = w
                skips.append(cur)
            if level < len(widths) - 1:
                self.down.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
                skips.append(cur)
        self.mid1 = ResBlock(cur, cur, tdim, g)
        self.mid_attn = Attention(cur, cfg.heads, g) if cfg.attention else nn.Identity()
        self.mid2 = ResBlock(cur, cur, tdim, g)

        self.up = nn.ModuleList()
        for level, w in reversed(list(enumerate(widths))):
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(ResBlock(cur + skips.pop(), w, tdim, g))
                cur = w
            if level > 0:
                # a 3x3 conv, then nearest upsampling: 4x cheaper than a conv after the upsampling
                self.up.append(nn.Conv2d(cur, cur, 3, padding=1))
        self.norm_out = _norm(cur, g)
        self.conv_out = nn.Conv2d(cur, self.out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.time(timestep_embedding(t, self.config.channels).to(x.dtype))
        h = self.conv_in(x)
        hs = [h]
        for m in self.down:
            h = m(h, temb) if isinstance(m, ResBlock) else m(h)
            hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb)), temb)
        for m in self.up:
            if isinstance(m, ResBlock):
                h = m(torch.cat([h, hs.pop()], dim=1), temb)
            else:  # a 3x3 conv, then upsample to the next skip's size
                h = F.interpolate(m(h), size=hs[-1].shape[-2:], mode="nearest")
        return self.conv_out(F.silu(self.norm_out(h)))


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@dataclass(frozen=True)
class Preset:
    """A network size with the training it was tuned for; `time` says what that costs."""

    network: UNetConfig
    steps: int
    batch_size: int
    lr: float
    ema_decay: float
    time: str


PRESETS: dict[str, Preset] = {
    # 8x8 digits on a CPU (160k parameters). Narrower nets train faster but lose too much: channels=8
    # does not beat the baselines for osmosis (figures: bench/README.md, "Training on a CPU").
    "tiny": Preset(
        network=UNetConfig(channels=16, channel_mults=(1, 2), num_res_blocks=1, groups=4),
        steps=3000, batch_size=64, lr=2e-3, ema_decay=0.995,
        time="about 1 minute on one idle CPU core, up to 5 on a busy machine (8x8 digits, 3,000 steps of 64)",
    ),
    # 16x16 to 28x28 on a CPU, or anything small on a GPU.
    "small": Preset(
        network=UNetConfig(channels=32, channel_mults=(1, 2, 2), num_res_blocks=1, attention=True, groups=8),
        steps=20_000, batch_size=128, lr=1e-3, ema_decay=0.999,
        time="about 30 minutes on 2 CPU cores at 28x28; a few minutes on a GPU",
    ),
    # 28x28 Fashion-MNIST on a GPU.
    "base": Preset(
        network=UNetConfig(channels=64, channel_mults=(1, 2, 2), num_res_blocks=2, attention=True, heads=4, groups=32),
        steps=50_000, batch_size=256, lr=2e-4, ema_decay=0.9995,
        time="about 15 minutes on one H100-class GPU (bf16) at 28x28",
    ),
}
