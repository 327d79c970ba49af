"""`SweepSpec`: a grid of jobs (processes x data sets x models) and its nightly report."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from shared.jobs.spec_base import Spec


class SweepSpec(Spec):
    kind: Literal["sweep"] = "sweep"
    name: str = Field(description="sweeps of the same name are compared night to night")
    processes: list[str] = Field(min_length=1)
    data: list[str] = Field(min_length=1)
    models: list[str] = Field(default_factory=lambda: ["oracle"])
    template: dict[str, Any] = Field(default_factory=lambda: {"kind": "evaluate"})
