"""The sweep planner: named sweeps, their nightly submission, and the distributed fan-out.

Named sweeps live in a YAML file (SCALESPACE_SWEEPS_FILE), a mapping from
name to sweep spec (the `kind` and `name` fields may be left out):

    nightly:
      processes: [vp, ve, blurring, heat]
      data: [digits]
      template: {kind: evaluate, n: 128}

They run nightly either through Celery beat (SCALESPACE_NIGHTLY_SWEEPS,
SCALESPACE_NIGHTLY_CRON) or as `scalespace sweep run NAME` from a Kubernetes
CronJob. Either way the submission carries the idempotency key
"sweep:<name>:<UTC date>", so a retried CronJob does not run the night twice.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

from scalespace import ScalespaceError
from scalespace.jobs.spec_files import read_spec_file
from scalespace.jobs.specs import parse_spec
from scalespace.scheduler.jobstore import NIGHTLY_LANE, JobRecord

# scalespace.jobs.sweep and scalespace.scheduler.submit import torch: they are imported in the functions that
# need them, so reading a sweeps file (and refusing a bad one) stays fast and small


def load_sweeps(path: str | None) -> dict[str, dict[str, Any]]:
    """Sweep specs by name from a YAML file (the safe spec reader: no aliases, SCALESPACE_MAX_SPEC_BYTES)."""
    if not path:
        raise ScalespaceError("no sweeps file: set SCALESPACE_SWEEPS_FILE or pass --file")
    data = read_spec_file(path, "sweeps file")
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ScalespaceError(f"sweeps file {path} must map each sweep name to a sweep spec")
    return {str(name): {**spec, "kind": "sweep", "name": str(spec.get("name", name))} for name, spec in data.items()}


def named_sweep(name: str, path: str | None) -> dict[str, Any]:
    sweeps = load_sweeps(path)
    if name not in sweeps:
        raise ScalespaceError(f"no sweep named {name!r} in {path}; it has: {', '.join(sorted(sweeps)) or 'none'}")
    return sweeps[name]


def nightly_key(name: str, when: datetime | None = None) -> str:
    day = (when or datetime.now(timezone.utc)).strftime("%Y-%m-%d")
    return f"sweep:{name}:{day}"


def submit_named_sweep(name: str, settings: Any, jobstore: Any, store: Any, enqueue: Callable[[str, str], None],
                       *, path: str | None = None, lane: str = NIGHTLY_LANE, key: str | None = None) -> str:
    """Queue tonight's run of a named sweep (once per UTC day); returns its job id."""
    from scalespace.scheduler.submit import check_spec, submit_spec

    spec = check_spec(named_sweep(name, path or settings.sweeps_file), settings, store)
    out = submit_spec(spec, settings=settings, jobstore=jobstore, enqueue=enqueue, lane=lane,
                      idempotency_key=key or nightly_key(name))
    return out.job_id


def plan_children(parent: str, spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(child id, child spec) of a job that fans out: a sweep's grid cells, or a sharded job's shards.

    Runs the one admission check (this worker's limits) first."""
    from scalespace.jobs.admission import admit
    from scalespace.jobs.shards import plan_shards
    from scalespace.jobs.sweep import child_job_id

    parsed, checked = admit(spec)
    if parsed.kind == "sweep":
        return [(child_job_id(parent, k), child.spec) for k, child in enumerate(checked)]
    return [(shard.job_id, shard.spec) for shard in plan_shards(parsed, parent)]


def fans_out(spec: dict[str, Any]) -> bool:
    """Does this job run as a parent of jobs of its own: a sweep, or a sample or evaluate job with shards > 1."""
    from scalespace.jobs.kinds import JOB_KINDS
    from scalespace.jobs.shards import is_sharded_parent

    kind = JOB_KINDS.get(spec.get("kind"))
    if kind is None:
        return False
    if kind.grid:
        return True
    if spec.get("shards", 1) in (1, None) or spec.get("shard") is not None:
        return False
    try:
        return is_sharded_parent(parse_spec(spec))
    except ScalespaceError:
        return False  # the job's own run reports the refusal


def _children(rec: JobRecord, jobstore: Any) -> list[tuple[str, str, str | None]]:
    """(id, state, error) of each child of a parent (a record gone with its TTL counts as expired)."""
    out = []
    for cid in rec.children or []:
        child = jobstore.get(cid)
        out.append((cid, child.state if child is not None else "expired", child.error if child is not None else None))
    return out


def shard_failures(rec: JobRecord, jobstore: Any) -> tuple[list[str], list[str]]:
    """A sharded parent's shards that have not ended (after a retry) and those that ended without results."""
    pending, failed = [], []
    for cid, state, error in _children(rec, jobstore):
        if state in ("queued", "running"):
            pending.append(cid)
        elif state != "succeeded":
            failed.append(f"{cid} {state}: {error or f'ended {state}'}")
    return pending, failed


def fan_out(parent: str, owner: str, spec: dict[str, Any], lane: str, jobstore: Any,
            enqueue: Callable[[str, str], None]) -> int:
    """Submit the children (a sweep's cells, a sharded job's shards) as jobs of their own; returns how many have
    not finished yet.

    Children have fixed ids, so a fan-out that runs twice (a redelivery) finds
    them and only re-sends the ones still queued (a duplicate message is dropped
    by the worker that gets it second).
    """
    ids = []
    for cid, child in plan_children(parent, spec):
        parsed = parse_spec(child)
        out = jobstore.submit(cid, parsed.model_dump(mode="json"), kind=parsed.kind, spec_hash=parsed.spec_hash(),
                              lane=lane, limit=-1, parent=parent)
        rec = jobstore.get(cid) if out.action != "created" else None
        if out.action == "created" or (rec is not None and rec.state == "queued"):
            enqueue(cid, lane)
        ids.append(cid)
    return jobstore.wait_for_children(parent, owner, ids)


def mark_failed_children(rec: JobRecord, jobstore: Any, store: Any) -> None:
    """Before aggregating: write failure.json for each child that ended without results."""
    from scalespace.jobs.sweep import FAILURE, record_failure

    for cid, state, error in _children(rec, jobstore):
        if state == "succeeded":
            continue
        if store.manifest(cid) is None and not store.exists("jobs", cid, FAILURE):
            record_failure(store, cid, state or "failed", error or f"child job ended {state or None}")
