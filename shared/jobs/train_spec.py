"""`TrainSpec`: fit a denoiser for one process on one data set."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from shared.jobs.spec_base import Spec


class TrainSpec(Spec):
    kind: Literal["train"] = "train"
    process: str
    process_params: dict[str, Any] = Field(default_factory=dict)
    data: str
    seed: int = Field(0, ge=0, lt=2**63)
    device: Literal["auto", "cpu", "cuda"] = "auto"
