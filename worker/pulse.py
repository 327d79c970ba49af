"""The worker's pulse: a thread that proves the worker alive and keeps lost jobs moving.

Every SCALESPACE_HEARTBEAT_S it
- touches SCALESPACE_HEARTBEAT_FILE (the liveness probe reads its age),
- registers the worker in Redis (readiness and /metrics count live workers),
- requeues running jobs whose worker was lost (lease expired, heartbeat stale),
- hands jobs whose retry backoff is over back to their lane,
- sends again the message of a job queued for longer than
  SCALESPACE_VISIBILITY_TIMEOUT_S (a worker died between taking the message
  and starting the job, or a Redis failover lost the message: the broker
  removes a message when a worker takes it, see scalespace.worker.celery_app),
- runs the janitor over ended jobs (scalespace.scheduler.janitor), after
  dropping the manifests the job store kept for the jobs whose manifest.json
  this worker published, and taking off its list those that had one attempt
  only (nothing left to tidy: no HEAD, no read).
Any worker may do the last four; the transitions are atomic in Redis, so two
workers never requeue the same job twice.

The lease clock: a lease's expiry keeps running while Redis is away, so after
an outage every lease may look lapsed. So a worker reaps only once it has seen
Redis answer for a whole lease period (SCALESPACE_LEASE_S): after a
reconnection, or after it starts, every live worker has renewed its leases by
then. And when Redis comes back, a worker renews its own leases first.
A Sentinel failover is such an outage: the beats fail until the new master
answers, then the same renewal comes first; a lease the new master lacks (its
write was not replicated) is set again by that renewal.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

from celery import bootsteps

from scalespace.scheduler.janitor import tidy
from scalespace.worker.runtime import runtime_for

log = logging.getLogger("scalespace.worker")


def touch(path: str) -> None:
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"pid": os.getpid(), "time": time.time()}))
    except OSError as e:
        log.warning("cannot write the heartbeat file %s (SCALESPACE_HEARTBEAT_FILE): %s", path, e.strerror)


#: ended jobs one pulse tidies at most (within half a heartbeat): workers that end many short jobs (shards)
#: keep the janitor's list short
JANITOR_LIMIT = 50
_RNG = random.Random()


def pulse_once(rt: Any, *, reap: bool = True) -> int:
    """One beat; returns how many jobs it put back on the queue (lost workers' jobs only when `reap`)."""
    s = rt.settings
    touch(s.heartbeat_file)
    js = rt.jobstore
    js.register_worker(rt.worker_name, 3 * s.heartbeat_s + 5, {"pid": os.getpid(), "lanes": s.worker_lane_list()})
    moved = 0
    lost = (js.reap(s.lease_s) + js.resend(s.visibility_timeout_s)) if reap else []
    for job_id, lane in lost + js.due():
        rt.enqueue(job_id, lane)
        moved += 1
        log.info("job %s back on lane %s", job_id, lane)
    published = [rt.published.popleft() for _ in range(len(rt.published))]
    js.janitor_skip(published)  # published by this worker: kept bytes dropped; one attempt ever: off the list
    if reap:  # a random run of the ended jobs, so many workers' pulses tidy different ones; half a beat at most
        tidy(js, rt.store, grace_s=s.lease_s, limit=JANITOR_LIMIT, budget_s=s.heartbeat_s / 2, rng=_RNG)
    return moved


class Pulse:
    """The beats of one worker, with the lease clock of the module docstring."""

    def __init__(self, rt: Any, clock: Any = time.monotonic):
        self.rt, self.clock = rt, clock
        self.up_since = clock()  # a new worker waits a lease period before reaping too
        self.down = False

    def beat(self) -> int:
        if self.down:
            for lease in list(self.rt.leases):  # our own jobs first: their leases lapsed while Redis was away
                lease.renew()
            self.down = False
            self.up_since = self.clock()
        return pulse_once(self.rt, reap=self.clock() - self.up_since >= self.rt.settings.lease_s)

    def failed(self) -> None:
        self.down = True


class PulseStep(bootsteps.StartStopStep):
    """A Celery boot step: the pulse runs while the worker's consumer does."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any):
        self.rt = runtime_for(worker.app)
        self.rt.worker_name = worker.hostname or self.rt.worker_name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker: Any) -> None:
        touch(self.rt.settings.heartbeat_file)
        self._thread = threading.Thread(target=self._loop, name="scalespace-pulse", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        pulse = Pulse(self.rt)
        while True:
            try:
                pulse.beat()
            except Exception as e:  # noqa: BLE001 - Redis away: the file is still touched, try again next beat
                pulse.failed()
                touch(self.rt.settings.heartbeat_file)
                log.warning("pulse: %s: %s", type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            if self._stop.wait(self.rt.settings.heartbeat_s):
                return

    def stop(self, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.rt.jobstore.unregister_worker(self.rt.worker_name)
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        try:
            Path(self.rt.settings.heartbeat_file).unlink(missing_ok=True)
        except OSError:
            pass

    def terminate(self, worker: Any) -> None:  # a cold shutdown skips stop(); the pulse must end either way
        self.stop(worker)
