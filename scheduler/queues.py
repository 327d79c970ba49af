"""Task names, lane queues, the Celery client, and putting a job id on the broker.

The scheduler sends tasks by name and never imports the worker: `celery_client`
is a Celery app configured for sending (broker, JSON only, the lanes' queues,
the nightly schedule that beat sends), and the worker's app
(scalespace.worker.celery_app) is this one plus what running tasks needs.
The task names stay as they are, so queued messages survive an upgrade.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.schedules import crontab
from kombu import Queue

from scalespace import ScalespaceError
from scalespace.config import Settings, get_settings
from scalespace.scheduler.infra import celery_broker
from scalespace.scheduler.jobstore import NIGHTLY_LANE

log = logging.getLogger("scalespace.queues")

TASK_RUN = "scalespace.run"
TASK_NIGHTLY = "scalespace.nightly_sweep"


def queue_name(lane: str) -> str:
    """The broker queue of a lane (one Redis list per lane)."""
    return f"scalespace.{lane}"


def celery_client(settings: Settings | None = None) -> Celery:
    """A Celery app that sends this service's tasks (and runs beat); JSON messages only."""
    settings = settings or get_settings()
    url, sentinel_options = celery_broker(settings)
    app = Celery("scalespace", broker=url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_ignore_result=True,
        broker_connection_retry=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options={
            # a worker takes a message off its queue at delivery (no unacked copy kept in Redis): two round
            # trips less per job. A job lost with its worker is requeued by the job store's reaper (running)
            # or sent again by the pulse after visibility_timeout_s (queued: scalespace.worker.pulse)
            "ack_emulation": False,
            "visibility_timeout": settings.visibility_timeout_s,
            "queue_order_strategy": "priority",
            "socket_timeout": 30,
            "socket_connect_timeout": 5,
            "health_check_interval": 10,
            **sentinel_options,
        },
        task_queues=[Queue(queue_name(lane)) for lane in settings.worker_lane_list()],
        task_default_queue=queue_name(settings.default_lane),
        timezone="UTC",
        enable_utc=True,
        beat_schedule=beat_schedule(settings),
        beat_scheduler="celery.beat:Scheduler",  # in memory: no shelve (pickle) file
    )
    app.scalespace_settings = settings
    return app


def beat_schedule(settings: Settings) -> dict[str, Any]:
    """One entry per nightly sweep name, on SCALESPACE_NIGHTLY_CRON (UTC)."""
    names = settings.nightly_sweep_names()
    if not names:
        return {}
    fields = settings.nightly_cron.split()
    if len(fields) != 5:
        raise ScalespaceError(f"SCALESPACE_NIGHTLY_CRON={settings.nightly_cron!r} must have 5 fields (minute hour day month weekday)")
    minute, hour, dom, month, dow = fields
    cron = crontab(minute=minute, hour=hour, day_of_month=dom, month_of_year=month, day_of_week=dow)
    return {f"nightly-sweep-{n}": {"task": TASK_NIGHTLY, "schedule": cron, "args": [n],
                                    "options": {"queue": queue_name(NIGHTLY_LANE)}} for n in names}


class Enqueuer:
    """Sends `scalespace.run(job_id)` to the lane's queue; the message is JSON and holds only the id."""

    def __init__(self, celery_app: Any):
        self.app = celery_app

    def __call__(self, job_id: str, lane: str) -> None:
        self.app.send_task(
            TASK_RUN, args=[job_id], queue=queue_name(lane), serializer="json",
            retry=True, retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2},
        )

    def message(self, job_id: str, lane: str) -> tuple[str, str]:
        """The broker message of `scalespace.run(job_id)` on the lane's queue, built as `send_task` builds it
        (Celery's task message, protocol 2, in kombu's Redis transport's form: one JSON item pushed onto the
        queue's list), without sending it: the list's key and the item. The job store pushes it in the script
        that writes the job's record, so the two land together or not at all, in one round trip."""
        import base64

        from kombu.serialization import dumps as serialize
        from kombu.utils.json import dumps
        from kombu.utils.uuid import uuid

        qname = queue_name(lane)
        # the arguments' repr as Celery's saferepr writes it for one short string (saferepr walks them: 0.1 ms)
        headers, properties, body, _ = self.app.amqp.create_task_message(
            uuid(), TASK_RUN, [job_id], {}, reply_to=self.app.thread_oid, ignore_result=None,
            argsrepr=repr([job_id]), kwargsrepr="{}")
        content_type, content_encoding, data = serialize(body, serializer="json")
        if isinstance(data, str):
            data = data.encode(content_encoding)
        item = {
            "body": base64.b64encode(data).decode(),
            "content-encoding": content_encoding,
            "content-type": content_type,
            "headers": headers,
            "properties": {**properties, "delivery_mode": 2, "priority": 0, "body_encoding": "base64",
                           "delivery_tag": uuid(), "delivery_info": {"exchange": "", "routing_key": qname}},
        }
        return qname, dumps(item)  # priority 0: the queue's own list (kombu's _q_for_pri)

    def close(self) -> None:
        try:
            self.app.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            log.debug("closing the Celery app failed", exc_info=True)
