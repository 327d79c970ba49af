"""`EvaluateSpec`: the scale-space report of one process on one data set."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from shared.jobs.spec_base import Spec


class EvaluateSpec(Spec):
    kind: Literal["evaluate"] = "evaluate"
    process: str
    process_params: dict[str, Any] = Field(default_factory=dict)
    data: str
    data_size: int | None = Field(None, ge=4, le=256)
    data_limit: int | None = Field(None, ge=1)
    model: str = "oracle"
    n: int = Field(256, ge=2, le=100_000, description="forward trajectory samples")
    seed: int = Field(0, ge=0, lt=2**63)
    device: Literal["auto", "cpu", "cuda"] = "auto"
