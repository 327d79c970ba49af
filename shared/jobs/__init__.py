"""Job specs (the wire contract), the table of job kinds, and `run_job`, the one path that executes them.

    specs.py      the spec of each kind (pydantic), `parse_spec`, KINDS
    kinds.py      kind -> its spec, its check and its runner (JOB_KINDS, `job_kind`)
    run.py        `run_job`: runs a spec with its kind's runner and writes its manifest (embedded: last)
    context.py    what a running job sees (JobContext) and what it reports (Progress)
    stopping.py   JobStopped: why a running job stops early (torch-free)
    sample.py, evaluate.py, train.py, sweep.py: the runners, each with its check

The names below are imported on first use, not with the package: `specs` and
`kinds` import without torch, so the command line starts fast and the
worker's parent process (which must not start CUDA) can use them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scalespace.jobs.context import JobContext, Progress
    from scalespace.jobs.stopping import JobStopped
    from scalespace.jobs.run import run_job
    from scalespace.jobs.specs import SampleSpec, Spec, parse_spec

#: name -> the module that defines it
_EXPORTS = {
    "JobContext": "context", "JobStopped": "stopping", "Progress": "context",
    "run_job": "run",
    "SampleSpec": "specs", "Spec": "specs", "parse_spec": "specs",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


__all__ = ["JobContext", "JobStopped", "Progress", "SampleSpec", "Spec", "parse_spec", "run_job"]
