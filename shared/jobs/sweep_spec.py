"""`SweepSpec`: a grid of jobs (processes x data sets x models) and its nightly report.

    {"kind": "sweep", "name": "nightly", "processes": ["vp", "heat"], "data": ["digits"],
     "template": {"kind": "evaluate", "n": 64}}

Each cell of the grid is one child job: the template with the cell's process,
data set and model (a `train` template ignores the models axis). The sweep's
report compares every figure with the previous sweep of the same name and
flags a regression when a figure moves the wrong way by more than
max(tolerance * |previous|, tolerance_abs).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from scalespace.ids import check_id
from scalespace.jobs.spec_base import Spec

#: fields each child gets from the grid, never from the template
GRID_FIELDS = {"process": "processes", "data": "data", "model": "models"}
CHILD_KINDS = ("sample", "evaluate", "train")


class SweepSpec(Spec):
    kind: Literal["sweep"] = "sweep"
    name: str = Field(description="sweeps of the same name are compared night to night")
    processes: list[str] = Field(min_length=1, max_length=16, description="forward processes to cover")
    data: list[str] = Field(min_length=1, max_length=16, description="data sets to cover")
    models: list[str] = Field(default_factory=lambda: ["oracle"], min_length=1, max_length=16,
                              description="'oracle' and/or model ids")
    template: dict[str, Any] = Field(default_factory=lambda: {"kind": "evaluate"},
                                     description="the child job spec, without process, data and model")
    tolerance: float = Field(0.05, ge=0, le=10, description="relative change that counts as a regression")
    tolerance_abs: float = Field(1e-6, ge=0, description="smallest absolute change that counts")
    directions: dict[str, Literal["lower", "higher"]] = Field(
        default_factory=dict, description="figure name (or its last part) -> which way is better; overrides the defaults"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        check_id(v, "sweep name")
        return v

    @field_validator("processes", "data", "models")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("lists each value twice; list it once")
        return v

    @field_validator("template")
    @classmethod
    def _template(cls, v: dict[str, Any]) -> dict[str, Any]:
        kind = v.get("kind")
        if kind not in CHILD_KINDS:
            raise ValueError(f"kind must be one of {', '.join(CHILD_KINDS)} (a sweep does not nest sweeps)")
        for f, axis in GRID_FIELDS.items():
            if f in v:
                raise ValueError(f"{f!r} comes from the sweep's {axis!r}; remove it from the template")
        return v
