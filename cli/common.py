"""Helpers shared by subcommands: reading specs, progress bars, printing results."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, get_args

from scalespace import ScalespaceError
from scalespace.jobs import spec_files
from scalespace.jobs.specs import Device

if TYPE_CHECKING:
    from scalespace.jobs.context import Progress  # imports torch: a type only


def read_spec_file(path: str) -> dict[str, Any]:
    """A job spec from a YAML or JSON file ('-': stdin), read by the one safe spec reader
    (scalespace.jobs.spec_files: no anchors or aliases, at most SCALESPACE_MAX_SPEC_BYTES)."""
    data = spec_files.read_spec_file(path, "job file")
    if not isinstance(data, dict):
        raise ScalespaceError(f"job file {path} must hold a mapping (a spec with a 'kind' field)")
    spec_files.check_finite(data)  # .nan / .inf: refused here too when the spec goes to the API
    return data


class ProgressBar:
    """A progress bar on a terminal (stderr), silent otherwise; `started`, when given, is printed to stderr once,
    at the job's first progress report (a job refused before it starts prints only its one-line error)."""

    def __init__(self, enabled: bool | None = None, started: str | None = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.started = started
        self._bars: dict[str, Any] = {}

    def __call__(self, p: Progress) -> None:
        if self.started:
            print(self.started, file=sys.stderr, flush=True)
            self.started = None
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self._bars.get(p.phase)
        if bar is None:
            bar = self._bars[p.phase] = tqdm(total=p.total, desc=p.phase, unit="step", file=sys.stderr, leave=True)
        bar.total = p.total
        bar.n = p.done
        if p.figures:
            bar.set_postfix({k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in p.figures.items()}, refresh=False)
        bar.refresh()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))


def spec_choices(spec: Any, field: str) -> list[str]:
    """The values a spec's Literal field accepts: the command line offers exactly those."""
    return list(get_args(spec.model_fields[field].annotation))


def add_job_options(p: Any) -> None:
    """The options every embedded job command shares: data, process parameters, device, output."""
    p.add_argument("--data-size", type=int, help="resize images to this many pixels a side")
    p.add_argument("--data-limit", type=int, help="use only the first images of the training split")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="a process parameter (repeatable)")
    p.add_argument("--device", choices=list(get_args(Device)), help="where the job runs (default auto: a GPU if there is one)")
    p.add_argument("--out", default="scalespace-results", help="output folder (default ./scalespace-results)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
