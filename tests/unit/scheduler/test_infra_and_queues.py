"""Connections (Redis URLs) and the Celery client the scheduler sends tasks with, by name."""

from __future__ import annotations

import pytest

from scalespace import ScalespaceError
from scalespace.config import Settings


def test_infra_helpers():
    from scalespace.scheduler.infra import broker_url, redact, require_redis_url

    assert redact("redis://:secret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact("redis://user:pw@h/1") == "redis://user:***@h/1" and redact("redis://h:1/0") == "redis://h:1/0"
    assert broker_url("unix:///tmp/r.sock?db=3") == "redis+socket:///tmp/r.sock?virtual_host=3"  # kombu's db
    assert broker_url("unix:///tmp/r.sock") == "redis+socket:///tmp/r.sock"
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


def _normalised(item: str) -> dict:
    """A broker message with its random ids taken out (task id, root id, correlation id, delivery tag)."""
    import base64
    import json

    m = json.loads(item)
    m["headers"] = {k: v for k, v in m["headers"].items() if k not in ("id", "root_id")}
    m["properties"] = {k: v for k, v in m["properties"].items() if k not in ("correlation_id", "delivery_tag")}
    m["body"] = json.loads(base64.b64decode(m["body"]))
    return m


def test_the_message_written_with_the_record_is_the_one_send_task_sends(settings, jobstore):
    """The submission writes the job's record and its broker message in one script: the message must be, id for
    id, what Celery's send_task puts on the queue (a real worker consumes it in the integration tests)."""
    import json

    from scalespace.scheduler.queues import Enqueuer, celery_client

    r = jobstore.r
    enqueue = Enqueuer(celery_client(settings))
    for lane in ("interactive", "batch"):
        key = f"scalespace.{lane}"
        r.delete(key)
        enqueue("job-a", lane)  # kombu's own publish
        sent = r.rpop(key)
        queue, item = enqueue.message("job-a", lane)
        assert queue == key and _normalised(item) == _normalised(sent)
        m = json.loads(item)
        assert m["headers"]["id"] == m["headers"]["root_id"] == m["properties"]["correlation_id"]
        assert _normalised(item)["body"][0] == ["job-a"] and m["headers"]["task"] == "scalespace.run"
    assert enqueue.message("job-a", "batch")[1] != enqueue.message("job-a", "batch")[1]  # a task id of its own

    # the record and the message land together, or neither does
    r.delete("scalespace.batch")
    spec = {"kind": "sample", "process": "vp", "data": "digits", "n": 4}

    def submit(job_id: str, limit: int = -1):
        return jobstore.submit(job_id, spec, kind="sample", spec_hash="h", lane="batch", limit=limit,
                               message=enqueue.message(job_id, "batch"))

    assert submit("m1").action == "created"
    assert [_normalised(x)["body"][0] for x in r.lrange("scalespace.batch", 0, -1)] == [["m1"]]
    assert submit("m1").action == "exists"  # nothing written: no second message
    full = jobstore.queue_position("m1", "batch")
    assert submit("m2", limit=full).action == "full" and jobstore.get("m2") is None
    assert r.llen("scalespace.batch") == 1
