"""`run_job`: the one code path that executes a spec, embedded or in a worker.

The manifest is written last and is the commit point; it names each artifact
with its path, sha256 and size. Running a job whose manifest already exists
returns that manifest (exactly-once effect).

Embedded (no `attempt`): artifacts and the manifest land in the job's folder;
a job that fails leaves no manifest, and its partial artifacts are removed,
except for resumable kinds, which restart from them (scalespace.jobs.kinds).

In the service (`attempt` = the delivery's fencing token): every artifact
goes under `attempt-<n>/` (run_job returns once all have landed), and nothing
is deleted or published here. run_job returns the attempt's manifest; the
worker commits the attempt in the job store with the manifest's bytes (one
atomic step, valid only for the current token: the job store keeps them
beside the record), then publishes them as the job's `manifest.json`.
Leftovers of other attempts are removed, and a manifest the worker could not
publish is published, by the janitor (scalespace.scheduler.janitor), never by
a worker that lost its lease.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Callable

from scalespace.ids import check_id, new_id
from scalespace.jobs.admission import admit
from scalespace.jobs.context import JobContext, JobStopped, ProgressFn, StopFn, resolve_device
from scalespace.jobs.kinds import job_kind
from scalespace.jobs.manifest import code_version, device_info, package_versions
from scalespace.jobs.specs import Spec, parse_spec
from scalespace.kernels.dispatch import describe as kernel_info
from scalespace.storage.base import MANIFEST, ArtifactStore


def new_job_id(spec: Spec) -> str:
    """`<kind>-<UTC time to the ms>Z-<26 random base32 chars>` (scalespace.ids.new_id): time-sortable, 130 random bits."""
    return new_id(spec.kind)


def run_job(
    spec: Spec | dict,
    store: ArtifactStore,
    progress: ProgressFn | None = None,
    *,
    job_id: str | None = None,
    should_stop: StopFn | None = None,
    attempt: int | None = None,
    guard: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run one job to completion and return its manifest (a dict).

    attempt: the fencing token of this delivery (the service); guard: called before every write, raises
    JobStopped when the attempt no longer owns the job. A job whose manifest exists returns it without running
    again (a redelivery after a commit the job store lost); the first attempt does not look.
    """
    if isinstance(spec, dict):
        spec = parse_spec(spec)
    job_id = check_id(job_id, "job id") if job_id else new_job_id(spec)
    # the service's first attempt (token 1) has no earlier delivery whose manifest it could find: no look
    existing = store.manifest(job_id) if attempt != 1 else None
    if existing is not None:
        return existing
    admit(spec)  # the one admission check: this service's limits, the memory estimate, the kind's check
    store.check_writable()
    device = resolve_device(getattr(spec, "device", "auto"))

    def run_child(child: dict[str, Any], child_id: str, child_progress: ProgressFn | None = None) -> dict[str, Any]:
        return run_job(child, store, child_progress or progress, job_id=child_id, should_stop=should_stop)

    ctx = JobContext(job_id=job_id, store=store, progress=progress, should_stop=should_stop, device=device,
                     run_child=run_child, attempt=attempt, guard=guard)
    kind = job_kind(spec.kind)
    runner = kind.run
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    try:
        summary = runner(spec, ctx)
        if attempt is None:
            ctx.wait_uploads()  # every artifact landed (an upload's failure is the job's, cleaned up below)
    except BaseException:
        if attempt is None and not kind.resumable:
            store.delete("jobs", job_id)  # embedded: no manifest was written; remove the partial artifacts
        raise
    manifest = {
        "job_id": job_id,
        "attempt": attempt,
        "kind": spec.kind,
        "spec": spec.model_dump(mode="json"),
        "spec_hash": spec.spec_hash(),
        "seeds": {"seed": getattr(spec, "seed", None), "noise": "philox4x32-10 (seed, sample, step, stream), 4 normals per counter"},
        "code_version": code_version(),
        "packages": package_versions(),
        "device": device_info(device),
        "kernels": kernel_info(device),
        "started_at": started.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "timings": {"total_s": time.perf_counter() - t0, **{f"{k}_s": v for k, v in ctx.timings.items()}},
        "summary": summary,
        **ctx.manifest_extra,
        "artifacts": [a.to_dict() for a in ctx.written],
    }
    if attempt is None:  # embedded: the manifest is the commit point, written once every artifact has landed
        store.put_json("jobs", job_id, MANIFEST, manifest)
        return manifest
    # the service: the commit point is the job store's commit, which the worker makes with this manifest once
    # every artifact (this wait: the first failure fails the job) has landed; the manifest itself goes up once,
    # as the job's manifest.json, after the commit (one upload a job less than an attempt manifest of its own)
    ctx.wait_uploads()
    return manifest


__all__ = ["JobStopped", "new_job_id", "run_job"]
