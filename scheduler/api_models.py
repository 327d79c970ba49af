"""The HTTP contract: request and response bodies of the scheduler API (pydantic, JSON)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from scalespace.config import LANES
from scalespace.jobs.specs import KINDS, JobSpec
from scalespace.scheduler.jobstore import STATES

# Literal of a tuple: its values, defined once (the job store's lanes and states, the specs' kinds)
Lane = Literal[LANES]  # type: ignore[valid-type]
State = Literal[STATES]  # type: ignore[valid-type]
Kind = Literal[KINDS]  # type: ignore[valid-type]


class JobRequest(BaseModel):
    """POST /v1/jobs: a job spec, the lane to queue it on, and an optional deadline."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    spec: JobSpec = Field(description="a sample, evaluate, train or sweep spec (its `kind` field says which)")
    lane: Lane | None = Field(None, description="priority lane; default SCALESPACE_DEFAULT_LANE")
    deadline_s: int | None = Field(None, ge=1, le=30 * 86400,
                                   description="seconds from now by which the job must finish, else it expires")


class ProgressView(BaseModel):
    phase: str | None = None
    done: int = 0
    total: int = 0
    figures: dict[str, Any] = Field(default_factory=dict)


class ArtifactView(BaseModel):
    name: str
    bytes: int | None = None
    sha256: str | None = None
    url: str = Field(description="a presigned S3 URL, or this API's artifact URL for a local store")


class ShardView(BaseModel):
    """One shard of a sharded sample or evaluate job (a job of its own, `<parent>.s000`, ...)."""

    id: str
    state: State
    progress: ProgressView | None = None
    worker: str | None = None
    attempts: int = 0
    error: str | None = None


class JobView(BaseModel):
    id: str
    kind: str
    lane: str
    state: State
    progress: ProgressView | None = None
    queue_position: int | None = Field(None, description="1 = next in its lane (queued jobs only)")
    created_at: datetime | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deadline_at: datetime | None = None
    duration_s: float | None = Field(None, description="run time of the attempt that succeeded")
    attempts: int = 0
    redeliveries: int = 0
    retries: int = 0
    worker: str | None = None
    error: str | None = None
    spec_hash: str | None = None
    spec: dict[str, Any] = Field(default_factory=dict)
    artifacts: list[ArtifactView] | None = Field(None, description="once succeeded")
    summary: Any = None
    parent: str | None = Field(None, description="the sweep this job belongs to")
    children: list[str] | None = Field(None, description="a sweep's child jobs, or a sharded job's shards")
    shards: list[ShardView] | None = Field(
        None, description="a sharded sample or evaluate job's shards, each with its state and progress (the job's "
                          "own progress is their sum while they run)")
    cancel_requested: bool = False
    cancel_step: int | None = Field(None, description="the step the job had reached when a cancel arrived")
    stopped_step: int | None = Field(None, description="the step a cancelled or expired job stopped at")
    dead_letter: bool = False


class JobList(BaseModel):
    jobs: list[JobView]
    count: int


class DeadLetters(BaseModel):
    jobs: list[str]


class SweepChild(BaseModel):
    key: str = Field(description="the grid cell: process/data/model")
    job_id: str
    kind: str | None = None
    state: str | None = None
    error: str | None = None
    figures: dict[str, float | bool] = Field(default_factory=dict,
                                             description="numeric and boolean leaves of the child's summary, by path")


class SweepComparison(BaseModel):
    key: str = Field(description="the grid cell")
    figure: str = Field(description="the figure's path, or `state` for a child that stopped succeeding")
    previous: Any = None
    current: Any = None
    direction: str | None = Field(None, description="which way is better: lower, higher or unknown (null)")
    status: str = Field(description="same, improved, regression, changed, new or missing")
    relative_change: float | None = None


class SweepRun(BaseModel):
    job_id: str
    at: datetime | None = Field(None, description="when the run was recorded (else when its job was created)")
    state: str | None = Field(None, description="the sweep job's state (succeeded once its report is committed)")
    has_report: bool = False
    report_url: str | None = Field(None, description="sweep-report.html: a presigned S3 URL, or this API's artifact URL")
    compared_with: str | None = Field(None, description="the earlier run this one's report compares with")
    counts: dict[str, int] = Field(default_factory=dict, description="comparisons by status")
    regressions: list[SweepComparison] = Field(default_factory=list)
    comparisons: list[SweepComparison] = Field(default_factory=list)
    children: list[SweepChild] = Field(default_factory=list)


class SweepHistory(BaseModel):
    name: str
    runs: list[SweepRun] = Field(description="oldest first: the committed runs (each with its report), then runs "
                                             "of this name still in the job store without one (running, failed)")


class ErrorBody(BaseModel):
    error: str = Field(description="a short code: invalid_request, validation, unauthorized, not_found, conflict, "
                                   "lane_full, unavailable, internal")
    detail: str = Field(description="one line saying what went wrong and how to fix it")
    field: str | None = Field(None, description="the request field at fault, when there is one")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str


class Ready(BaseModel):
    ready: bool
    checks: dict[str, str]
    workers: int | None = None


def ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=timezone.utc)


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "malformed request (e.g. not JSON)",
        401: "missing or wrong bearer token",
        404: "no such job",
        409: "conflict (idempotency key reused with another spec, or nothing to retry)",
        413: "request body too large",
        422: "the spec or a parameter is invalid: `field` and `detail` say which and why",
        429: "the lane is full: retry after the Retry-After header's seconds",
        503: "Redis or the artifact store is unreachable",
    }.items()
}
