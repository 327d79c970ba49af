"""Why a running job stops early (torch-free: the worker's lease code raises it too)."""

from __future__ import annotations

#: a job checks for cancellation at most this often (JobContext.tick; in the service each check is a round trip
#: to the job store, and the worker's StepReporter asks no more often than this either)
STOP_CHECK_INTERVAL_S = 0.05


class JobStopped(Exception):
    """Raised between steps, or before a write, when a job is cancelled, past its deadline, shutting down, or no
    longer owned by this attempt (`reason`: cancelled, deadline, shutdown, lease-lost)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
