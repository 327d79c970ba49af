"""Job specs (the wire contract) and `run_job`, the one path that executes them."""

from scalespace.jobs.context import JobContext, JobStopped, Progress
from scalespace.jobs.run import run_job
from scalespace.jobs.specs import SampleSpec, Spec, parse_spec

__all__ = ["JobContext", "JobStopped", "Progress", "SampleSpec", "Spec", "parse_spec", "run_job"]
