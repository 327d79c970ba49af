"""Connections (Redis URLs) and the Celery client the scheduler sends tasks with, by name."""

from __future__ import annotations

import pytest

from scalespace import ScalespaceError
from scalespace.config import Settings


def test_infra_helpers():
    from scalespace.scheduler.infra import broker_url, redact, require_redis_url

    assert redact("redis://:secret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact("redis://user:pw@h/1") == "redis://user:***@h/1" and redact("redis://h:1/0") == "redis://h:1/0"
    assert broker_url("unix:///tmp/r.sock?db=3") == "redis+socket:///tmp/r.sock?db=3"
    with pytest.raises(ScalespaceError, match="SCALESPACE_REDIS_URL is not set"):
        require_redis_url(Settings())
    with pytest.raises(ScalespaceError, match="must start with"):
        require_redis_url(Settings(redis_url="http://x"))


def test_beat_schedule_from_settings():
    from scalespace.scheduler.queues import celery_client

    conf = celery_client(Settings(redis_url="redis://h:1/0", nightly_sweeps="a, b", nightly_cron="30 2 * * *")).conf
    assert sorted(conf.beat_schedule) == ["nightly-sweep-a", "nightly-sweep-b"]
    assert conf.beat_schedule["nightly-sweep-a"]["args"] == ["a"]
    assert conf.beat_schedule["nightly-sweep-a"]["options"] == {"queue": "scalespace.nightly"}
    with pytest.raises(ScalespaceError, match="SCALESPACE_NIGHTLY_CRON"):
        celery_client(Settings(redis_url="redis://h:1/0", nightly_sweeps="a", nightly_cron="nightly"))


def test_the_client_sends_json_by_task_name_to_the_lanes_queues():
    from scalespace.scheduler.queues import TASK_RUN, Enqueuer, celery_client

    conf = celery_client(Settings(redis_url="redis://h:1/0")).conf
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert [q.name for q in conf.task_queues] == ["scalespace.interactive", "scalespace.batch", "scalespace.nightly"]
    sent = []

    class App:
        def send_task(self, name, **kwargs):
            sent.append((name, kwargs["args"], kwargs["queue"], kwargs["serializer"]))

    Enqueuer(App())("job-1", "batch")
    assert sent == [(TASK_RUN, ["job-1"], "scalespace.batch", "json")] and TASK_RUN == "scalespace.run"
