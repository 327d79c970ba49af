"""Every kind of job in one table: its spec, its check and its runner.

    kind      spec          check                 runner
    sample    SampleSpec    check_sample_spec     run_sample     (scalespace.jobs.sample)
    evaluate  EvaluateSpec  check_evaluate_spec   run_evaluate   (scalespace.jobs.evaluate)
    train     TrainSpec     check_train_spec      run_train      (scalespace.jobs.train), resumable
    sweep     SweepSpec     plan_sweep            run_sweep      (scalespace.jobs.sweep), a grid

A check refuses what can be refused before a job loads any data, as
ScalespaceError("field: reason"), and returns what its runner needs (the
process; a grid's children). A single kind's check also takes the spec's
process when the caller has built it already. Each runner calls its check
first, so a job run here and a job admitted by the service are refused alike.

- run_job (scalespace.jobs.run) runs a spec with its kind's runner, and keeps
  the artifacts of a failed run of a resumable kind (train resumes from its
  checkpoint);
- every door admits a spec with scalespace.jobs.admission.admit: this
  service's limits on every size field, the kind's check, the estimated peak
  memory; a grid's children each like a job of their own (the API through
  scalespace.scheduler.submit, run_job and so the worker and the command line);
- the worker fans a grid's children out as jobs of their own, then runs the
  grid to aggregate them;
- the API and the command line list the kinds (KINDS, in scalespace.jobs.specs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from scalespace import ScalespaceError
from scalespace.jobs.specs import EvaluateSpec, SampleSpec, Spec, SweepSpec, TrainSpec

if TYPE_CHECKING:
    from scalespace.jobs.context import JobContext

Check = Callable[..., Any]
Runner = Callable[[Any, "JobContext"], dict[str, Any]]


@dataclass(frozen=True)
class JobKind:
    spec: type[Spec]
    #: () -> (check, runner), importing the kind's module on first use
    load: Callable[[], tuple[Check, Runner]]
    #: a failed run keeps its artifacts and the next run of the same job id resumes from them
    resumable: bool = False
    #: a grid of jobs of other kinds: its check plans the children, its runner runs and reports them
    grid: bool = False

    @property
    def name(self) -> str:
        return self.spec.model_fields["kind"].default

    @property
    def check(self) -> Check:
        return self._functions()[0]

    @property
    def run(self) -> Runner:
        return self._functions()[1]

    def _functions(self) -> tuple[Check, Runner]:
        try:
            return self.load()
        except ModuleNotFoundError as e:
            if not (e.name or "").startswith(f"{__package__}."):
                raise  # something the module imports is missing: not ours to hide
            # a build that does not ship this kind's module
            raise ScalespaceError(f"kind: jobs of kind {self.name!r} are not available in this version") from None


# Each kind's module is imported by its loader, not with this table: a worker loads (and
# starts torch for) only the kinds it runs, and the table imports without torch.


def _sample() -> tuple[Check, Runner]:
    from scalespace.jobs.sample import check_sample_spec, run_sample

    return check_sample_spec, run_sample


def _evaluate() -> tuple[Check, Runner]:
    from scalespace.jobs.evaluate import check_evaluate_spec, run_evaluate

    return check_evaluate_spec, run_evaluate


def _train() -> tuple[Check, Runner]:
    from scalespace.jobs.train import check_train_spec, run_train

    return check_train_spec, run_train


def _sweep() -> tuple[Check, Runner]:
    from scalespace.jobs.sweep import plan_sweep, run_sweep

    return plan_sweep, run_sweep


JOB_KINDS: dict[str, JobKind] = {k.name: k for k in (
    JobKind(SampleSpec, _sample),
    JobKind(EvaluateSpec, _evaluate),
    JobKind(TrainSpec, _train, resumable=True),
    JobKind(SweepSpec, _sweep, grid=True),
)}


def job_kind(kind: str) -> JobKind:
    """The table's row for `kind`, or ScalespaceError naming the kinds there are."""
    row = JOB_KINDS.get(kind)
    if row is None:
        raise ScalespaceError(f"kind: jobs of kind {kind!r} are not supported; choose one of {', '.join(JOB_KINDS)}")
    return row


__all__ = ["JOB_KINDS", "JobKind", "job_kind"]
