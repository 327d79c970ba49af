"""The worker's Celery app: the scheduler's client app, plus late acks and one job at a time per process.

A message carries only a job id; the job record in Redis (scalespace.scheduler.jobstore)
is the truth. The broker, JSON serialisation, the lanes' queues, task names and
the nightly schedule come from scalespace.scheduler.queues.celery_client (the
scheduler sends by name and never imports this module). Settings that matter
for delivery:
- acks_late + reject_on_worker_lost: a message is acknowledged after the task
  returns; a warm shutdown puts a message it has not finished back;
- no ack emulation on Redis: the broker removes a message when a worker takes
  it (no unacked copy to write at delivery and delete at the ack: two round
  trips less per job). The job store is the backstop instead: a worker that
  dies with a running job is found by the lease reaper within
  SCALESPACE_LEASE_S and the job is sent again; one that dies between taking
  the message and starting the job leaves it queued, and the pulse sends a
  job queued for longer than SCALESPACE_VISIBILITY_TIMEOUT_S again
  (scalespace.worker.pulse), as the broker's redelivery did;
- prefetch 1 and the solo pool: a worker holds one job and runs it in its
  own main thread (no fork, so CUDA is initialised in the process that uses it);
- queue order 'priority': a worker takes from its lanes in the order given
  (interactive before batch before nightly);
- with SCALESPACE_REDIS_SENTINELS the broker is kombu's Sentinel transport: the
  consumer asks the Sentinels for the master whenever it reconnects, so it
  follows a failover (a worker busy with a job reconnects when the job ends);
- task events and remote control (SCALESPACE_TASK_EVENTS, on by default):
  Flower, `celery events` and `celery inspect` see the workers and their tasks
  (in the solo pool a worker answers `inspect` between jobs).
"""

from __future__ import annotations

import os
from typing import Any

from scalespace.config import Settings, get_settings
from scalespace.scheduler.queues import celery_client
from scalespace.worker.pulse import PulseStep
from scalespace.worker.tasks import register


def worker_nodename(name: str | None, *, pid: int | None = None, host: str | None = None) -> str:
    """The worker's node name, made as Celery's own `celery worker -n NAME` makes it (host_format of
    default_nodename): `%h` becomes the full host name, `%n` its first part, `%d` its domain, and a name
    without `@` gets Celery's `celery@` in front. Default: `scalespace-<pid>@<host name>`."""
    from celery.utils.nodenames import default_nodename, host_format

    if not name:
        return host_format(f"scalespace-{pid or os.getpid()}@%h", host=host)
    return host_format(default_nodename(name), host=host)


def make_celery(settings: Settings | None = None, *, with_tasks: bool = False) -> Any:
    """A Celery app for these settings; `with_tasks` registers the worker's tasks and boot steps."""
    settings = settings or get_settings()
    app = celery_client(settings)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_pool="solo",
        # task events and remote control: Flower, `celery events` and `celery inspect` see our workers and tasks
        worker_enable_remote_control=settings.task_events,
        worker_send_task_events=settings.task_events,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    if with_tasks:
        register(app)
        app.steps["worker"].add(PulseStep)
    return app


__all__ = ["make_celery"]
