"""What a worker process holds: settings, the job store, the artifact store, the way to enqueue.

Connections are made on first use, so importing the worker touches neither
Redis nor S3 (nor torch). One runtime per Celery app.
"""

from __future__ import annotations

import collections
import gc
import logging
import os
import socket
import threading
from typing import Any

from celery import signals

from scalespace.scheduler.infra import redis_client
from scalespace.scheduler.jobstore import JobStore
from scalespace.scheduler.queues import Enqueuer
from scalespace.storage import store_from_settings

log = logging.getLogger("scalespace.worker")
_RUNTIMES: list["Runtime"] = []
_LOCK = threading.Lock()


class Runtime:
    def __init__(self, app: Any):
        self.app = app
        self.settings = app.scalespace_settings
        self.worker_name = f"{socket.gethostname()}.{os.getpid()}"
        #: set when a warm shutdown has waited SCALESPACE_WORKER_SHUTDOWN_TIMEOUT_S: the job is requeued
        self.shutdown_requested = threading.Event()
        #: the leases this worker holds now (scalespace.worker.lease.Lease registers itself)
        self.leases: set[Any] = set()
        #: jobs whose manifest.json this worker published: the pulse drops the manifests their commits kept and
        #: takes those of one attempt off the janitor's list (scalespace.worker.pulse); lost with the process,
        #: the janitor then looks for itself
        self.published: collections.deque[str] = collections.deque(maxlen=10_000)
        self._jobstore: Any = None
        self._store: Any = None
        self._enqueue: Any = None
        self._lock = threading.Lock()

    @property
    def jobstore(self) -> Any:
        with self._lock:
            if self._jobstore is None:
                # a worker outlives short Redis outages: its client retries longer than the API's
                self._jobstore = JobStore.from_settings(self.settings, redis_client(self.settings, retries=8))
            return self._jobstore

    @property
    def store(self) -> Any:
        with self._lock:
            if self._store is None:
                self._store = store_from_settings(self.settings)
            return self._store

    @property
    def enqueuer(self) -> Enqueuer:
        """Sends a job's message; its `message` lets a submission write record and message in one step."""
        with self._lock:
            if self._enqueue is None:
                self._enqueue = Enqueuer(self.app)
            return self._enqueue

    def enqueue(self, job_id: str, lane: str) -> None:
        self.enqueuer(job_id, lane)

    def enqueue_parent(self, parent: str) -> None:
        """A sweep whose last child just ended goes back on the queue to aggregate."""
        if not parent:
            return
        rec = self.jobstore.get(parent)
        if rec is not None:
            self.enqueue(parent, rec.lane or self.settings.default_lane)


_settled = False


def settle_heap() -> None:
    """Once a process, after the first job it ran: everything alive then (torch, the library, the caches the
    job filled: some 330,000 objects) moved out of the garbage collector's reach (gc.freeze). Otherwise each
    full collection walks them all again, 0.05-0.15 s in the middle of some later job."""
    global _settled
    if _settled:
        return
    _settled = True
    gc.collect()
    gc.freeze()


def runtime_for(app: Any) -> Runtime:
    rt = getattr(app, "scalespace_runtime", None)
    if rt is None:
        with _LOCK:
            rt = getattr(app, "scalespace_runtime", None)
            if rt is None:
                rt = Runtime(app)
                app.scalespace_runtime = rt
                _RUNTIMES.append(rt)
    return rt


@signals.worker_shutting_down.connect
def _on_shutdown(sig: str = "", how: str = "", exitcode: int = 0, **_: Any) -> None:
    """Warm shutdown: let the current job finish, but requeue it if it is not done in time."""
    for rt in list(_RUNTIMES):
        timeout = rt.settings.worker_shutdown_timeout_s
        if how == "Cold":
            rt.shutdown_requested.set()
            continue
        timer = threading.Timer(timeout, rt.shutdown_requested.set)
        timer.daemon = True
        timer.start()
        log.info("shutting down (%s): the current job has %s s to finish, then it is requeued", sig, timeout)
