"""The Celery app: JSON messages only, late acks, one job at a time per worker process.

A message carries only a job id; the job record in Redis (scalespace.scheduler.jobstore)
is the truth. Settings that matter for delivery:
- acks_late + reject_on_worker_lost: a message is acknowledged after the task
  returns, so a worker that dies mid-job leaves it to be delivered again;
- prefetch 1 and the solo pool: a worker holds one job and runs it in its
  own main thread (no fork, so CUDA is initialised in the process that uses it);
- visibility_timeout above the longest job: the broker redelivers an
  unacknowledged message only after it; a lost worker's job comes back much
  sooner through the lease reaper (scalespace.worker.pulse);
- queue order 'priority': a worker takes from its lanes in the order given
  (interactive before batch before nightly).
"""

from __future__ import annotations

from typing import Any

from scalespace.scheduler.infra import broker_url, require_redis_url
from scalespace.scheduler.queues import TASK_NIGHTLY, TASK_RUN, queue_name
from scalespace.config import Settings, get_settings


def make_celery(settings: Settings | None = None, *, with_tasks: bool = False) -> Any:
    """A Celery app for these settings; `with_tasks` registers the worker's tasks and boot steps."""
    from celery import Celery
    from kombu import Queue

    settings = settings or get_settings()
    app = Celery("scalespace", broker=broker_url(require_redis_url(settings)), set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_pool="solo",
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_retry=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            "queue_order_strategy": "priority",
            "socket_timeout": 30,
            "socket_connect_timeout": 5,
            "health_check_interval": 10,
        },
        task_queues=[Queue(queue_name(lane)) for lane in settings.worker_lane_list()],
        task_default_queue=queue_name(settings.default_lane),
        timezone="UTC",
        enable_utc=True,
        beat_schedule=_beat_schedule(settings),
        beat_scheduler="celery.beat:Scheduler",  # in memory: no shelve (pickle) file
    )
    app.scalespace_settings = settings
    if with_tasks:
        from scalespace.worker.pulse import PulseStep
        from scalespace.worker.tasks import register

        register(app)
        app.steps["worker"].add(PulseStep)
    return app


def _beat_schedule(settings: Settings) -> dict[str, Any]:
    """One entry per nightly sweep name, on SCALESPACE_NIGHTLY_CRON (UTC)."""
    names = settings.nightly_sweep_names()
    if not names:
        return {}
    from celery.schedules import crontab

    fields = settings.nightly_cron.split()
    if len(fields) != 5:
        from scalespace import ScalespaceError

        raise ScalespaceError(f"SCALESPACE_NIGHTLY_CRON={settings.nightly_cron!r} must have 5 fields (minute hour day month weekday)")
    minute, hour, dom, month, dow = fields
    cron = crontab(minute=minute, hour=hour, day_of_month=dom, month_of_year=month, day_of_week=dow)
    return {f"nightly-sweep-{n}": {"task": TASK_NIGHTLY, "schedule": cron, "args": [n],
                                    "options": {"queue": queue_name("nightly")}} for n in names}


__all__ = ["TASK_NIGHTLY", "TASK_RUN", "make_celery", "queue_name"]
