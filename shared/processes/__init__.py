"""Forward processes: one interface (base.Process, LinearGaussianProcess or DriftDiffusionProcess), one file per process."""

from __future__ import annotations

from typing import Any

from scalespace import ScalespaceError
from scalespace.processes.base import (
    DegradedPrior,
    DriftDiffusionProcess,
    LinearGaussianProcess,
    Posterior,
    Process,
    ProcessParams,
)
from scalespace.processes.blurring import Blurring
from scalespace.processes.heat import Heat
from scalespace.processes.osmosis import Osmosis
from scalespace.processes.ve import VE
from scalespace.processes.vp import VP

PROCESSES: dict[str, type[Process]] = {p.name: p for p in (VP, VE, Blurring, Heat, Osmosis)}


def process_class(name: str) -> type[Process]:
    try:
        return PROCESSES[name]
    except KeyError:
        raise ScalespaceError(f"unknown process {name!r}; choose one of {', '.join(PROCESSES)}") from None


def make_process(name: str, shape: tuple[int, int, int], params: dict[str, Any] | None = None) -> Process:
    """Build and validate a process for images of `shape` = (C, H, W)."""
    from pydantic import ValidationError

    cls = process_class(name)
    try:
        return cls(shape, params or {})
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise ScalespaceError(f"process_params.{loc}: {err['msg']}") from None


__all__ = [
    "PROCESSES", "DegradedPrior", "DriftDiffusionProcess", "LinearGaussianProcess", "Posterior", "Process",
    "ProcessParams", "make_process", "process_class",
]
