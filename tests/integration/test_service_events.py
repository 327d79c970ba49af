"""Task events and remote control: what Flower, `celery events` and `celery inspect` need, from a real worker."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from service_infra import submit, wait_for, wait_state

from scalespace.scheduler.infra import broker_url

pytestmark = pytest.mark.integration

SPEC = {"kind": "sample", "process": "vp", "data": "digits", "n": 2, "steps": 5, "seed": 1}


def test_the_event_stream_and_inspect_see_our_workers_and_tasks(api, settings, worker_process):
    from scalespace.worker.celery_app import make_celery

    app = make_celery(settings)
    events: list[dict] = []
    receiver: list = []

    def listen() -> None:
        with app.connection_for_read() as conn:
            recv = app.events.Receiver(conn, handlers={"*": events.append})
            receiver.append(recv)
            recv.capture(limit=None, timeout=None, wakeup=True)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    wait_for(lambda: receiver, 30, "the event receiver")
    try:
        worker_process(settings, "evented")  # `scalespace worker` as deployed: worker-online and heartbeats too
        job = submit(api, SPEC)
        assert wait_state(api, job["id"], timeout_s=180)["state"] == "succeeded"

        def seen() -> bool:
            types = {(e.get("type"), e.get("hostname")) for e in events}
            received = [e for e in events if e.get("type") == "task-received" and e.get("name") == "scalespace.run"]
            done = {e.get("uuid") for e in events if e.get("type") == "task-succeeded"}
            return ("worker-online", "evented@test") in types and ("worker-heartbeat", "evented@test") in types \
                and any(r["uuid"] in done and job["id"] in str(r.get("args")) for r in received)

        wait_for(seen, 30, "worker and task events")
        ping = subprocess.run([sys.executable, "-m", "celery", "-b", broker_url(settings.redis_url), "inspect", "ping",
                               "-t", "10"], capture_output=True, text=True, timeout=60)
        assert ping.returncode == 0 and "evented@test" in ping.stdout and "pong" in ping.stdout, ping.stdout + ping.stderr
    finally:
        if receiver:
            receiver[0].should_stop = True
        listener.join(timeout=10)


def test_events_off_when_the_setting_says_so(make_settings):
    from scalespace.worker.celery_app import make_celery

    on = make_celery(make_settings()).conf
    off = make_celery(make_settings(task_events=False)).conf
    assert on.worker_send_task_events and on.worker_enable_remote_control
    assert not off.worker_send_task_events and not off.worker_enable_remote_control
