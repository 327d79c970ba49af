"""A worker's lease on a job (renewed by a heartbeat thread) and its per-step report to the job store."""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from scalespace.jobs.stopping import JobStopped

log = logging.getLogger("scalespace.worker")


def _now() -> float:
    """The clock of `Lease.held_until` (monotonic: it runs on while the process is frozen)."""
    return time.monotonic()


class Lease:
    """Renews the lease every heartbeat_s; `lost` turns true when another worker holds the job.

    A lease registers itself in `registry` (the worker's runtime keeps one) while
    it is held, so the pulse can renew every lease of this worker at once when
    Redis comes back, before anything is reaped.

    `held_until`: until when (on `_now`'s clock) this delivery is known to hold the
    lease key. Redis said so at a request sent at t (begin, a heartbeat, a step), with
    the key's time left; no other delivery can take the job before the key lapses
    (the reaper requeues only jobs without one), so until t + time left - margin
    the ownership check before a write needs no round trip. A frozen process finds
    its clock past it when it wakes, and asks Redis.
    """

    def __init__(self, jobstore: Any, job_id: str, owner: str, lease_s: float, heartbeat_s: float,
                 registry: set["Lease"] | None = None):
        self.js, self.job_id, self.owner = jobstore, job_id, owner
        self.lease_s, self.heartbeat_s = lease_s, heartbeat_s
        self.lost = False
        self.held_until = float("-inf")
        #: taken off the key's time left: room for clock-rate differences and a late heartbeat
        self.margin_s = max(0.5, 0.1 * lease_s)
        self._misses = 0
        self._registry = registry
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> "Lease":
        if self._registry is not None:
            self._registry.add(self)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        """Stops the heartbeat without waiting for its thread to end (a beat still in flight renews nothing
        once the job has ended: the job store's heartbeat takes only a running job's lease)."""
        self._stop.set()
        if self._registry is not None:
            self._registry.discard(self)

    @staticmethod
    def now() -> float:
        return _now()

    def hold(self, sent_at: float, ms: int) -> None:
        """Redis answered a request sent at `sent_at` (`_now`) that this delivery holds the lease key for `ms`
        more (0: it does not hold the key: every check asks Redis until a heartbeat sets it again)."""
        self.held_until = sent_at + ms / 1000 - self.margin_s if ms > 0 else float("-inf")

    def holds(self) -> bool:
        """Known to hold the lease now, without asking Redis."""
        return not self.lost and _now() < self.held_until

    def renew(self) -> bool:
        """One heartbeat now; raises when Redis is unreachable."""
        sent_at = _now()
        if self.js.heartbeat(self.job_id, self.owner, self.lease_s):
            self._misses = 0
            self.hold(sent_at, int(self.lease_s * 1000))
            return True
        self._misses += 1
        self.lost = self._misses >= 2  # one miss can be a commit racing the heartbeat
        return False

    def _loop(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.renew()
            except Exception as e:  # noqa: BLE001 - Redis away: keep working, renew when it is back
                log.warning("lease heartbeat for %s failed (%s); retrying", self.job_id, type(e).__name__)


def _jsonable(value: Any) -> Any:
    """Progress figures as JSON: floats finite or None, tensors and numpy scalars as numbers."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f if math.isfinite(f) else None


class StepReporter:
    """The progress sink and stop check that run_job calls between steps.

    `progress` only remembers the latest step; `should_stop` writes it and reads
    the cancel flag in one atomic round trip, so a cancel lands within one step.
    With `min_interval_s`, a check within that time of the last round trip
    (`checked_at`: the job store's `begin`, which read the cancel flag too) asks
    nothing while the lease is known to be held: a short job's first steps cost
    no round trip, and a cancel still lands within min_interval_s and a step.
    The commit carries the progress not yet written (`unsent`).
    A Redis outage never stops the job: the step is reported again once Redis is back.
    """

    def __init__(self, jobstore: Any, job_id: str, owner: str, lease: Lease, *, deadline_at: float | None,
                 shutdown: threading.Event, min_interval_s: float = 0.0, checked_at: float = float("-inf")):
        self.js, self.job_id, self.owner, self.lease = jobstore, job_id, owner, lease
        self.deadline_at, self.shutdown = deadline_at, shutdown
        self.min_interval_s = min_interval_s
        self.latest: dict[str, Any] | None = None
        self.done = 0
        self._dirty = False
        self._checked = checked_at  # `_now` when the last round trip that read the cancel flag was sent

    @property
    def unsent(self) -> dict[str, Any] | None:
        """The latest progress when the job store does not have it yet."""
        return self.latest if self._dirty else None

    def progress(self, p: Any) -> None:
        self.latest = {"phase": p.phase, "done": int(p.done), "total": int(p.total), "figures": _jsonable(p.figures)}
        self.done = int(p.done)
        self._dirty = True

    def guard(self) -> None:
        """Before a write: this delivery still owns the job, as Redis said within the lease key's time left
        (Lease.held_until), else a fresh look in the job store.
        Redis away: the write goes on (it lands in this attempt's own folder; the commit decides)."""
        if self.lease.lost:
            raise JobStopped("lease-lost")
        if self.lease.holds():
            return
        try:
            reason = self._step(None)
        except Exception as e:  # noqa: BLE001 - see above
            log.debug("ownership check for %s failed: %s", self.job_id, e)
            return
        if reason == "lease-lost":
            self.lease.lost = True
            raise JobStopped("lease-lost")

    def _step(self, progress: dict[str, Any] | None) -> str:
        sent_at = _now()
        reason, held_ms = self.js.step_held(self.job_id, self.owner, progress)
        self.lease.hold(sent_at, held_ms)
        return reason

    def should_stop(self) -> str | None:
        if self.deadline_at is not None and time.time() > self.deadline_at:
            return "deadline"
        if self.shutdown.is_set():
            return "shutdown"
        if self.lease.lost:
            return "lease-lost"
        if self.min_interval_s > 0 and _now() - self._checked < self.min_interval_s and self.lease.holds():
            return None
        try:
            self._checked = _now()
            reason = self._step(self.latest if self._dirty else None)
            self._dirty = False
        except Exception as e:  # noqa: BLE001 - see the class docstring
            log.debug("progress report for %s failed: %s", self.job_id, e)
            return None
        return reason or None
