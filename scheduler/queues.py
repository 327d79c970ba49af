"""Task names, lane queues, and putting a job id on the broker."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("scalespace.queues")

TASK_RUN = "scalespace.run"
TASK_NIGHTLY = "scalespace.nightly_sweep"


def queue_name(lane: str) -> str:
    """The broker queue of a lane (one Redis list per lane)."""
    return f"scalespace.{lane}"


class Enqueuer:
    """Sends `scalespace.run(job_id)` to the lane's queue; the message is JSON and holds only the id."""

    def __init__(self, celery_app: Any):
        self.app = celery_app

    def __call__(self, job_id: str, lane: str) -> None:
        self.app.send_task(
            TASK_RUN, args=[job_id], queue=queue_name(lane), serializer="json",
            retry=True, retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2},
        )

    def close(self) -> None:
        try:
            self.app.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            log.debug("closing the Celery app failed", exc_info=True)
