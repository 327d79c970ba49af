"""The worker's tasks: thin shells around scalespace.jobs.run_job.

`scalespace.run(job_id)`:
  1. take the lease (Redis, atomic) and this delivery's fencing token: drop
     the message if the job is finished, leased by a live worker, missing, or
     a sweep still waiting for children; expire or cancel it if its deadline
     passed or a cancel came; fail it into the dead-letter list when it has
     used up SCALESPACE_MAX_DELIVERIES;
  2. run it: `run_job(spec, store, progress, job_id=..., attempt=token, ...)`
     writes under the attempt's own folder, checks the cancel flag, the
     deadline and the lease between steps and before every write (the lease:
     by the time Redis last said it is held, else a look in the job store),
     and returns the attempt's manifest once every file has landed;
  3. commit: one job-store step, valid only while this delivery owns the job
     with the current token, that keeps the manifest's bytes beside the record;
     then publish them as the job's `manifest.json` (else the janitor will).
     Or record the other outcomes (failed with the reason, cancelled,
     expired; back to the lane after an outage, with backoff).
A worker that lost its lease writes, deletes and publishes nothing: the new
owner's results stand, and the janitor (scalespace.scheduler.janitor) removes
the leftovers of attempts that were not committed.
A sweep fans out its children as jobs of their own, then comes back to
aggregate them once the last one has ended.

run_job (and so torch) is imported inside the task, never at import time:
CUDA starts in the process that runs the job. The table of job kinds and
the job store import without torch.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from typing import Any

from scalespace import ScalespaceError
from scalespace.ids import check_id
from scalespace.jobs.kinds import JOB_KINDS
from scalespace.jobs.stopping import STOP_CHECK_INTERVAL_S
from scalespace.scheduler.janitor import publish
from scalespace.scheduler.jobstore import JobRecord
from scalespace.scheduler.queues import TASK_NIGHTLY, TASK_RUN
from scalespace.storage import StoreUnavailable
from scalespace.worker.lease import Lease, StepReporter
from scalespace.worker.runtime import Runtime, runtime_for, settle_heap

log = logging.getLogger("scalespace.worker")


def register(app: Any) -> None:
    @app.task(name=TASK_RUN, bind=True, shared=False, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
    def run(task: Any, job_id: str) -> str:
        return run_task(runtime_for(task.app), job_id)

    @app.task(name=TASK_NIGHTLY, bind=True, shared=False, acks_late=True, ignore_result=True)
    def nightly_sweep(task: Any, name: str) -> str:
        from scalespace.scheduler.sweeps import submit_named_sweep  # imports torch: not at import time

        rt = runtime_for(task.app)
        job_id = submit_named_sweep(name, rt.settings, rt.jobstore, rt.store, rt.enqueuer)
        log.info("nightly sweep %s submitted as %s", name, job_id)
        return job_id


def _transient(e: BaseException) -> bool:
    """Errors that may pass: the store or Redis unreachable."""
    if isinstance(e, StoreUnavailable):
        return True
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(e, (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError))


def _retry_delay(rt: Runtime, retries: int) -> float:
    """Capped exponential backoff with jitter (half to all of the step), so retries after an outage spread out."""
    s = rt.settings
    return min(s.retry_backoff_s * 2 ** max(retries - 1, 0), s.retry_backoff_max_s) * random.uniform(0.5, 1.0)


def _durable(fn: Any, *args: Any, patience_s: float, **kwargs: Any) -> Any:
    """Do fn across an outage: retry while Redis or the store is unreachable, for up to patience_s."""
    deadline = time.monotonic() + patience_s
    delay = 0.5
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001
            if not _transient(e) or time.monotonic() + delay > deadline:
                raise
            log.warning("%s: %s unreachable; retrying in %.1f s", getattr(fn, "__name__", "call"),
                        "the store" if isinstance(e, StoreUnavailable) else "the job store", delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return text or type(e).__name__


def run_task(rt: Runtime, job_id: str) -> str:
    try:
        check_id(job_id, "job id")
    except ScalespaceError:
        log.error("dropped a message with an invalid job id %r", job_id)
        return "invalid"
    s, js = rt.settings, rt.jobstore
    owner = f"{rt.worker_name}/{uuid.uuid4().hex[:12]}"
    sent_at = Lease.now()
    got = js.begin(job_id, owner, rt.worker_name, lease_s=s.lease_s, max_attempts=s.max_deliveries)
    if got.action != "run":
        log.info("job %s: %s %s", job_id, got.action, got.reason or got.state or got.holder)
        rt.enqueue_parent(got.ready_parent)
        return got.action
    rec = got.record or js.get(job_id)
    if rec is None:  # the record expired between begin and here: nothing left to run or to record
        log.warning("job %s: its record is gone; dropped", job_id)
        return "missing"
    with Lease(js, job_id, owner, s.lease_s, s.heartbeat_s, registry=rt.leases) as lease:
        lease.hold(sent_at, int(s.lease_s * 1000))  # begin set the lease key for lease_s
        reporter = StepReporter(js, job_id, owner, lease, deadline_at=rec.deadline_at,
                                shutdown=rt.shutdown_requested, min_interval_s=STOP_CHECK_INTERVAL_S,
                                checked_at=sent_at)
        out = _execute(rt, job_id, owner, got.fence, rec, reporter)
    settle_heap()  # once, after the first job this process ran
    return out


def _execute(rt: Runtime, job_id: str, owner: str, fence: int, rec: JobRecord, reporter: StepReporter) -> str:
    js, spec = rt.jobstore, rec.spec
    kind = JOB_KINDS.get(spec.get("kind"))
    t0 = time.monotonic()
    try:
        from scalespace.scheduler.sweeps import fans_out  # imports torch: not at import time

        parent = kind is not None and fans_out(spec)
        if parent and not rec.children_total:
            from scalespace.scheduler.sweeps import fan_out

            pending = fan_out(job_id, owner, spec, rec.lane or rt.settings.default_lane, rt.jobstore, rt.enqueue)
            if pending == 0:
                rt.enqueue(job_id, rec.lane or rt.settings.default_lane)
            return "fanned-out"
        if parent and kind.grid:
            from scalespace.scheduler.sweeps import mark_failed_children

            mark_failed_children(rec, js, rt.store)
        elif parent:
            outcome = _shards_ended(rt, job_id, owner, rec, reporter)
            if outcome is not None:
                return outcome
        from scalespace.jobs import JobStopped, run_job  # torch and CUDA start here, in the worker process

        try:
            manifest = run_job(spec, rt.store, reporter.progress, job_id=job_id, should_stop=reporter.should_stop,
                               attempt=fence, guard=reporter.guard)
        except JobStopped as e:
            return _stopped(rt, job_id, owner, e.reason, reporter)
    except Exception as e:  # noqa: BLE001 - every outcome is recorded on the job
        if _transient(e):
            return _wait_out(rt, job_id, owner, e, reporter)
        if isinstance(e, ScalespaceError):
            reason = _one_line(e)
        else:
            log.exception("job %s failed", job_id)
            reason = f"{type(e).__name__}: {_one_line(e)}"
        out = _durable(js.finish, job_id, owner, "failed", reason, stopped_step=reporter.done,
                       patience_s=rt.settings.outage_tolerance_s)
        return _ended(rt, job_id, out, "failed")
    artifacts = [{k: a.get(k) for k in ("name", "path", "sha256", "bytes")} for a in manifest.get("artifacts", [])]
    encoded = rt.store.json_bytes(manifest)  # the bytes the commit keeps and manifest.json gets
    out = _durable(js.commit, job_id, owner, fence, artifacts, manifest.get("summary"), time.monotonic() - t0,
                   attempt=manifest.get("attempt") or fence, progress=reporter.unsent, manifest=encoded,
                   patience_s=rt.settings.outage_tolerance_s)
    if out.action != "succeeded":
        log.warning("job %s: not committed (%s, %s): another delivery owns it; this attempt's files stay for the "
                    "janitor", job_id, out.action, out.state)
        return _lease_lost(rt, job_id)
    if _publish(rt, job_id, int(manifest.get("attempt") or fence), encoded):
        rt.published.append(job_id)  # the pulse drops the kept manifest and, one attempt ever, the janitor's entry
    rt.enqueue_parent(out.ready_parent)
    log.info("job %s: %s in %.2f s", job_id, out.action, time.monotonic() - t0)
    return out.action


def _shards_ended(rt: Runtime, job_id: str, owner: str, rec: JobRecord, reporter: StepReporter) -> str | None:
    """A sharded job whose shards have ended: None when every shard succeeded (the job merges them now); else it
    fails naming the shards that failed (a retry of the job reruns those alone). Shards queued again by a retry
    are waited for first."""
    from scalespace.scheduler.sweeps import shard_failures

    js = rt.jobstore
    pending, failed = shard_failures(rec, js)
    if pending:
        if js.wait_for_children(job_id, owner, list(rec.children or [])) == 0:
            rt.enqueue(job_id, rec.lane or rt.settings.default_lane)
        return "fanned-out"
    if failed:
        reason = (f"{len(failed)} of {len(rec.children or [])} shards ended without results ({'; '.join(failed[:3])}"
                  f"{'; ...' if len(failed) > 3 else ''}); retry the job to rerun those shards alone")
        out = _durable(js.finish, job_id, owner, "failed", reason, stopped_step=reporter.done,
                       patience_s=rt.settings.outage_tolerance_s)
        return _ended(rt, job_id, out, "failed")
    return None


def _ended(rt: Runtime, job_id: str, out: Any, state: str) -> str:
    """After finish: a sweep parent may be ready; a refused finish means another delivery owns the job."""
    if out.action in ("not-ours", "not-running"):
        log.warning("job %s: not marked %s (%s): another delivery owns it", job_id, state, out.action)
        return _lease_lost(rt, job_id)
    rt.enqueue_parent(out.ready_parent)
    return state


def _lease_lost(rt: Runtime, job_id: str) -> str:
    """This delivery no longer owns the job. When no delivery does and the record says queued, a Redis
    failover lost this delivery's start while its message's removal from the queue survived: nothing would
    send the job again before SCALESPACE_VISIBILITY_TIMEOUT_S (the pulse's resend), so its message is sent now
    (the job store counts it as a resend; a message that still waits somewhere is dropped on delivery). The
    job's record, lease and files are left alone, as they are by any delivery that lost its lease."""
    try:
        lane = rt.jobstore.resend_lost_start(job_id)
        if lane is not None:
            rt.enqueue(job_id, lane or rt.settings.default_lane)
            log.warning("job %s: its start was lost (the record says queued, no delivery holds it): sent again",
                        job_id)
    except Exception as e:  # noqa: BLE001 - the pulse's resend after the visibility timeout is the backstop
        log.warning("job %s: a lost start could not be sent again now (%s); the pulse will", job_id, _one_line(e))
    return "lease-lost"


def _publish(rt: Runtime, job_id: str, attempt: int, manifest: bytes) -> bool:
    """The committed attempt's manifest as the job's manifest.json (only the committer and the janitor write it);
    across an S3 outage, retried for up to SCALESPACE_OUTAGE_TOLERANCE_S, then left to the janitor (False)."""
    try:
        _durable(publish, rt.store, job_id, attempt, manifest, patience_s=rt.settings.outage_tolerance_s)
    except StoreUnavailable as e:
        log.warning("job %s: manifest not published (%s); the janitor will", job_id, _one_line(e))
        return False
    return True


def _wait_out(rt: Runtime, job_id: str, owner: str, e: BaseException, reporter: StepReporter) -> str:
    """S3 or Redis unreachable: not the job's failure. Back off and retry without using an attempt, until the
    outage has lasted SCALESPACE_OUTAGE_TOLERANCE_S (counted from the first outage of this job); then fail."""
    js, s = rt.jobstore, rt.settings
    rec = _durable(js.get, job_id, patience_s=s.outage_tolerance_s)
    since = (rec.outage_since if rec is not None else None) or time.time()
    lasted = time.time() - since
    if lasted >= s.outage_tolerance_s:
        reason = (f"gave up after waiting {lasted:.0f} s for an unreachable store or job store (longer than "
                  f"SCALESPACE_OUTAGE_TOLERANCE_S={s.outage_tolerance_s:g}): {_one_line(e)}; retry the job once it is back")
        out = _durable(js.finish, job_id, owner, "failed", reason, stopped_step=reporter.done,
                       patience_s=s.outage_tolerance_s)
        log.error("job %s: %s", job_id, reason)
        return _ended(rt, job_id, out, "failed")
    retries = (rec.retries if rec is not None else 0) + 1
    delay = min(_retry_delay(rt, retries), max(s.outage_tolerance_s - lasted, 0.0) + 1.0)
    why = f"waiting out an outage ({lasted:.0f} s so far), retrying in {delay:.0f} s: {_one_line(e)}"
    n = _durable(js.requeue, job_id, owner, why, outage=True, delay_s=delay, patience_s=s.outage_tolerance_s)
    log.warning("job %s: %s", job_id, why)
    return "retrying" if n else "lost"


def _stopped(rt: Runtime, job_id: str, owner: str, reason: str, reporter: StepReporter) -> str:
    js = rt.jobstore
    where = f"at step {reporter.done}" + (f" of {reporter.latest['total']}" if reporter.latest else "")
    if reason == "shutdown":
        _durable(js.requeue, job_id, owner, f"requeued: the worker shut down {where}", refund=True,
                 patience_s=rt.settings.outage_tolerance_s)
        rec = js.get(job_id)
        rt.enqueue(job_id, (rec.lane if rec is not None else "") or rt.settings.default_lane)
        return "requeued"
    if reason == "lease-lost":
        log.warning("job %s: lease lost %s; another worker has it", job_id, where)
        return _lease_lost(rt, job_id)
    state = "expired" if reason == "deadline" else "cancelled"
    text = f"deadline passed {where}" if state == "expired" else f"cancelled by request {where}"
    out = _durable(js.finish, job_id, owner, state, text, stopped_step=reporter.done,
                   patience_s=rt.settings.outage_tolerance_s)
    return _ended(rt, job_id, out, state)
