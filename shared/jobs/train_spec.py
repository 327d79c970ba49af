"""`TrainSpec`: fit a denoiser for one process on one data set.

The minimal spec is {"kind": "train", "process": "vp", "data": "digits"}:
the `tiny` preset with its steps, batch size, learning rate and EMA decay.
Any of those can be set, and `network` overrides single fields of the
preset's U-Net (e.g. {"channels": 32}).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from scalespace.jobs.spec_base import Spec, DataName, ProcessName


class TrainSpec(Spec):
    kind: Literal["train"] = "train"
    process: ProcessName = Field(description="vp, ve, blurring, heat or osmosis")
    process_params: dict[str, Any] = Field(default_factory=dict, description="parameters of the process")
    data: DataName = Field(description="fashion-mnist, digits or gaussian-mixture")
    data_size: int | None = Field(None, ge=4, le=256, description="resize images to this many pixels a side")
    data_limit: int | None = Field(None, ge=1, description="use only the first images of the training split")
    preset: Literal["tiny", "small", "base"] = Field("tiny", description="network size and training defaults")
    network: dict[str, Any] = Field(default_factory=dict, description="U-Net fields overriding the preset's")
    objective: Literal["auto", "eps", "v", "one_step"] = Field("auto", description="auto: the process's default")
    steps: int | None = Field(None, ge=1, le=10_000_000, description="optimisation steps; default: the preset's")
    batch_size: int | None = Field(None, ge=1, le=65_536, description="default: the preset's")
    lr: float | None = Field(None, gt=0, le=1, description="peak learning rate (Adam); default: the preset's")
    warmup_steps: int = Field(100, ge=0, description="linear learning-rate warm-up, then cosine decay")
    ema_decay: float | None = Field(None, ge=0, lt=1, description="EMA of the weights; default: the preset's")
    grad_clip: float = Field(1.0, ge=0, description="clip the gradient norm to this (0 = off)")
    amp: bool = Field(True, description="bf16 mixed precision on a GPU (ignored on a CPU)")
    seed: int = Field(0, ge=0, lt=2**63)
    eval_every: int = Field(0, ge=0, description="evaluate every k steps (0: only at the end)")
    eval_samples: int = Field(128, ge=2, le=100_000, description="samples per evaluation")
    eval_steps: int | None = Field(None, ge=1, description="reverse steps per evaluation sample (default 100 or T)")
    eval_extractor: str = Field("pixels", description="Fréchet distance features: pixels, random-conv or inception")
    checkpoint_every: int = Field(500, ge=1, description="save the training state every k steps (for resuming)")
    log_every: int = Field(10, ge=1, description="loss-curve resolution, in steps")
    device: Literal["auto", "cpu", "cuda"] = "auto"



    @field_validator("network")
    @classmethod
    def _network_fields(cls, v: dict[str, Any]) -> dict[str, Any]:
        from scalespace.denoisers.unet import UNetConfig

        unknown = sorted(set(v) - set(UNetConfig.model_fields))
        if unknown:
            raise ValueError(f"unknown U-Net field {unknown[0]!r}; choose from {', '.join(UNetConfig.model_fields)}")
        return v
