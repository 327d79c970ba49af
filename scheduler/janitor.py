"""The janitor: what an ended job's attempts left behind, removed by nobody but it.

A worker writes only under its own attempt's folder (`jobs/<id>/attempt-<n>/`,
n its fencing token) and deletes nothing: a worker that lost its lease may
still be running, so it must not touch what the new owner wrote. When a job
ends (the job store's `finish`), it is put on the janitor's list. Once it has
stayed ended for a grace period (SCALESPACE_LEASE_S by default: a worker that
lost its lease finds out within a heartbeat and writes nothing more), the
janitor
- of a succeeded job: publishes the committed attempt's manifest as the job's
  `manifest.json` if its worker could not (S3 away right after the commit, or
  the worker gone): the bytes its commit kept beside the record, or, for a
  commit that kept none, a copy of the attempt's own manifest; and removes
  every other attempt's folder;
- of a failed, cancelled or expired job: removes every attempt's folder,
  except for resumable kinds (training restarts from its last checkpoint when
  retried).
Every worker's pulse runs it; a job store step makes each job tidied once
per ending. An unreachable store leaves the job on the list for the next round.
"""

from __future__ import annotations

import logging
import random
import time

from scalespace.jobs.kinds import JOB_KINDS
from scalespace.scheduler.jobstore import TERMINAL, JobStore
from scalespace.storage import MANIFEST, ArtifactStore, StoreUnavailable, attempt_folder

log = logging.getLogger("scalespace.janitor")


def publish(store: ArtifactStore, job_id: str, attempt: int, manifest: bytes | None = None) -> None:
    """The committed attempt's manifest, byte for byte, as the job's `manifest.json`: `manifest` (the bytes the
    commit kept) when there are some, else one server-side copy of the attempt's own manifest (a commit that
    kept none; no bytes through the janitor)."""
    if manifest is not None:
        store.put("jobs", job_id, MANIFEST, manifest)
    else:
        store.copy("jobs", job_id, f"{attempt_folder(attempt)}/{MANIFEST}", MANIFEST)


def tidy_job(jobstore: JobStore, store: ArtifactStore, job_id: str) -> str:
    """Tidy one ended job; returns what was done (for the log and the tests)."""
    rec = jobstore.get(job_id)
    if rec is None:
        return "gone"
    state = rec.state
    if state not in TERMINAL:
        return "live"  # retried since: it comes back to the list when it ends again
    fence, committed = rec.fence, rec.committed_attempt
    if state == "succeeded" and committed:
        if not store.exists("jobs", job_id, MANIFEST):
            publish(store, job_id, committed, jobstore.manifest(job_id) if rec.manifest_held else None)
        if rec.manifest_held:
            jobstore.drop_manifest(job_id)  # manifest.json holds it now
        keep = {committed}
    else:
        kind = JOB_KINDS.get(rec.kind)
        if kind is not None and kind.resumable:
            return "kept"  # a retry resumes from the last checkpoint
        keep = set()
    removed = 0
    for attempt in range(1, fence + 1):
        if attempt not in keep:
            store.delete("jobs", job_id, attempt_folder(attempt))
            removed += 1
    return f"removed {removed}"


def tidy(jobstore: JobStore, store: ArtifactStore, *, grace_s: float, limit: int = 50, budget_s: float | None = None,
         rng: random.Random | None = None) -> int:
    """One round over the jobs that ended more than grace_s ago; returns how many were tidied.

    At most `limit` jobs, and no further one once `budget_s` has passed (one at least); `rng`: take a random run of the due jobs
    (many workers' rounds then tidy different ones)."""
    done = 0
    t0 = time.monotonic()
    for job_id, score in jobstore.janitor_due(grace_s, limit, rng):
        try:
            what = tidy_job(jobstore, store, job_id)
        except StoreUnavailable as e:
            log.warning("janitor: %s stays on the list: %s", job_id, str(e).splitlines()[0])
            continue
        except Exception as e:  # noqa: BLE001 - one bad job must neither stop the round nor block the list
            what = f"given up: {type(e).__name__}: {e}"
            log.error("janitor: %s: %s", job_id, what)
        if jobstore.janitor_done(job_id, score):
            done += 1
        log.debug("janitor: %s %s", job_id, what)
        if budget_s is not None and time.monotonic() - t0 >= budget_s:
            break  # the rest wait for the next round
    return done


__all__ = ["publish", "tidy", "tidy_job"]
