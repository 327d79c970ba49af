"""Fewer round trips per job, each with the case it must still catch.

- `begin` hands back the record it leased and `submit` the record it wrote (with the queue position), both equal
  to a fresh read;
- a step tells for how long the delivery holds the lease key; the ownership check before a write asks Redis only
  once that time (less a margin) has passed, and then catches a lost lease;
- the first attempt does not look for an earlier manifest, a later one returns it;
- the committer publishes the attempt's manifest with one PUT of the same bytes (the janitor, with one copy), a
  child before its parent is queued.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from scalespace.jobs import JobStopped

SPEC = {"kind": "sample", "process": "vp", "data": "digits", "n": 4, "steps": 6, "seed": 2}


def _submit(js: Any, job_id: str, **kw: Any) -> Any:
    return js.submit(job_id, SPEC, kind="sample", spec_hash="h" + job_id, lane="batch", limit=-1, **kw)


def test_submit_and_begin_hand_back_the_record_a_read_would_give(jobstore):
    _submit(jobstore, "other")
    out = _submit(jobstore, "j", deadline_s=600)
    assert out.action == "created" and out.position == 2 == jobstore.queue_position("j", "batch")
    assert out.record == jobstore.get("j")
    assert _submit(jobstore, "j").record is None  # refused: nothing written, nothing handed back
    got = jobstore.begin("j", "w/1", "w", lease_s=30, max_attempts=3)
    assert got.action == "run" and got.record == jobstore.get("j")
    assert got.record.state == "running" and got.record.lease_owner == "w/1" and got.record.fence == got.fence == 1
    assert jobstore.begin("j", "w/2", "w", lease_s=30, max_attempts=3).record is None  # leased: no record


def test_a_step_tells_how_long_the_lease_key_is_held(jobstore):
    _submit(jobstore, "s")
    jobstore.begin("s", "w/1", "w", lease_s=30, max_attempts=3)
    reason, held = jobstore.step_held("s", "w/1", None)
    assert reason == "" and 29_000 < held <= 30_000
    assert jobstore.step_held("s", "w/2", None) == ("lease-lost", 0)
    jobstore.r.delete(jobstore.key("lease", "s"))  # the key lapsed: still ours until reaped, but not held
    assert jobstore.step_held("s", "w/1", None) == ("", 0)
    jobstore.heartbeat("s", "w/1", 30)  # the heartbeat takes it again
    jobstore.cancel("s")
    reason, held = jobstore.step_held("s", "w/1", None)
    assert reason == "cancelled" and held > 29_000


class _Counting:
    """The job store, counting the steps that reach Redis."""

    def __init__(self, js: Any):
        self.js, self.steps = js, 0

    def step_held(self, *args: Any) -> tuple[str, int]:
        self.steps += 1
        return self.js.step_held(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.js, name)


@pytest.fixture
def clock(monkeypatch):
    """The lease's clock, moved by hand (a process frozen for `now[0]` seconds finds it moved on)."""
    import scalespace.worker.lease as lease_mod

    now = [0.0]
    monkeypatch.setattr(lease_mod, "_now", lambda: time.monotonic() + now[0])
    return now


def test_the_check_before_a_write_asks_redis_only_past_the_held_time(jobstore, clock):
    import threading

    from scalespace.worker.lease import Lease, StepReporter

    _submit(jobstore, "g")
    counting = _Counting(jobstore)
    sent = Lease.now()
    jobstore.begin("g", "w/1", "w", lease_s=30, max_attempts=3)
    lease = Lease(counting, "g", "w/1", 30, 3600)
    reporter = StepReporter(counting, "g", "w/1", lease, deadline_at=None, shutdown=threading.Event())
    assert not lease.holds()  # nothing known yet: the first check asks
    reporter.guard()
    assert counting.steps == 1 and lease.holds()
    for _ in range(5):
        reporter.guard()
    assert counting.steps == 1  # held for about 30 s less the margin: no round trip
    lease.hold(sent, 30_000)
    clock[0] = 30 - lease.margin_s + 0.01  # just past the held time (a freeze, a slow job)
    reporter.guard()
    assert counting.steps == 2 and lease.holds()  # asked again, and held again

    # another delivery took the job while this one was away: the first write after it is refused
    jobstore.r.delete(jobstore.key("lease", "g"))
    jobstore.r.hset(jobstore.key("job", "g"), "lease_owner", "w/2")
    clock[0] += 60
    with pytest.raises(JobStopped):
        reporter.guard()
    assert lease.lost and counting.steps == 3


def test_a_lapsed_key_is_asked_about_at_every_check_until_a_heartbeat_takes_it(jobstore, clock):
    import threading

    from scalespace.worker.lease import Lease, StepReporter

    _submit(jobstore, "h")
    jobstore.begin("h", "w/1", "w", lease_s=30, max_attempts=3)
    jobstore.r.delete(jobstore.key("lease", "h"))
    counting = _Counting(jobstore)
    lease = Lease(counting, "h", "w/1", 30, 3600)
    reporter = StepReporter(counting, "h", "w/1", lease, deadline_at=None, shutdown=threading.Event())
    for k in range(3):
        reporter.guard()
        assert counting.steps == k + 1 and not lease.holds()
    assert lease.renew() and lease.holds()  # the heartbeat set the key again for the lease period
    reporter.guard()
    assert counting.steps == 3


def test_stop_checks_within_the_interval_ask_nothing_while_the_lease_is_held(jobstore, clock):
    """min_interval_s: a check within it of the last round trip (begin's, at first) asks nothing; past it, one
    round trip, which sees a cancel; a lease not known to be held is asked about at every check."""
    import threading

    from scalespace.worker.lease import Lease, StepReporter

    _submit(jobstore, "c")
    counting = _Counting(jobstore)
    sent = Lease.now()
    jobstore.begin("c", "w/1", "w", lease_s=30, max_attempts=3)
    lease = Lease(counting, "c", "w/1", 30, 3600)
    lease.hold(sent, 30_000)
    reporter = StepReporter(counting, "c", "w/1", lease, deadline_at=None, shutdown=threading.Event(),
                            min_interval_s=0.05, checked_at=sent)
    jobstore.cancel("c")
    reporter.progress(type("P", (), {"phase": "sample", "done": 1, "total": 4, "figures": {}})())
    assert reporter.should_stop() is None and counting.steps == 0  # begin asked just now
    assert reporter.unsent == {"phase": "sample", "done": 1, "total": 4, "figures": {}}
    clock[0] = 0.06
    assert reporter.should_stop() == "cancelled" and counting.steps == 1 and reporter.unsent is None
    assert jobstore.get("c").progress["done"] == 1
    assert reporter.should_stop() is None and counting.steps == 1  # within the interval again
    lease.hold(Lease.now(), 0)  # not known to be held: every check asks
    assert reporter.should_stop() == "cancelled" and counting.steps == 2

    # the counterexample: without an interval every check is a round trip
    eager = StepReporter(counting, "c", "w/1", lease, deadline_at=None, shutdown=threading.Event(),
                         checked_at=Lease.now())
    lease.hold(Lease.now(), 30_000)
    assert eager.should_stop() == "cancelled" and counting.steps == 3


def test_a_step_of_a_delivery_that_lost_the_job_writes_no_progress(jobstore):
    """Only the owner's progress lands: not another delivery's, and no record is made up for a job whose record
    is gone (a failover lost it)."""
    _submit(jobstore, "o")
    jobstore.begin("o", "w/1", "w", lease_s=30, max_attempts=3)
    jobstore.step("o", "w/1", {"phase": "sample", "done": 2, "total": 4, "figures": {}})
    assert jobstore.step("o", "w/2", {"phase": "sample", "done": 9, "total": 9, "figures": {}}) == "lease-lost"
    assert jobstore.get("o").progress["done"] == 2
    assert jobstore.step("gone", "w/1", {"phase": "sample", "done": 1, "total": 4, "figures": {}}) == "lease-lost"
    assert not jobstore.r.exists(jobstore.key("job", "gone")) and jobstore.get("gone") is None


def test_the_commit_carries_the_progress_no_step_wrote(jobstore):
    for job_id, progress in (("p", {"phase": "sample", "done": 4, "total": 4, "figures": {}}), ("q", None)):
        _submit(jobstore, job_id)
        got = jobstore.begin(job_id, "w/1", "w", lease_s=30, max_attempts=3)
        jobstore.step(job_id, "w/1", {"phase": "sample", "done": 2, "total": 4, "figures": {}})
        assert jobstore.commit(job_id, "w/1", got.fence, [], None, 0.1, progress=progress).action == "succeeded"
    assert jobstore.get("p").progress["done"] == 4 and jobstore.get("p").progress_done == 4
    assert jobstore.get("q").progress["done"] == 2  # none carried: the last step's stays


def test_the_first_attempt_does_not_look_for_a_manifest_a_later_one_returns_it(tmp_path):
    from scalespace.jobs import run_job
    from scalespace.storage import LocalStore

    looks: list[str] = []

    class Store(LocalStore):
        def manifest(self, job_id: str) -> Any:
            looks.append(job_id)
            return super().manifest(job_id)

    store = Store(tmp_path)
    first = run_job(SPEC, store, job_id="m", attempt=1)
    assert looks == [] and first["attempt"] == 1
    store.put_json("jobs", "m", "manifest.json", first)  # published after the commit
    again = run_job(SPEC, store, job_id="m", attempt=2)  # a redelivery after a commit the job store lost
    assert looks == ["m"] and again == first
    assert not any(p.startswith("attempt-2/") for p in store.list("jobs", "m"))  # nothing ran again


def _runtime(settings: Any, store: Any = None) -> Any:
    from scalespace.worker.celery_app import make_celery
    from scalespace.worker.runtime import runtime_for

    rt = runtime_for(make_celery(settings, with_tasks=True))
    if store is not None:
        rt._store = store
    return rt


def test_the_commit_keeps_the_manifest_the_committer_publishes_it_with_one_put_and_the_janitor_after_it(
        api, settings, jobstore):
    """The attempt's manifest goes up once a job: as the job's manifest.json after the commit, from the bytes the
    commit kept in the job store. The janitor publishes those bytes when the committer could not, and the API
    serves them meanwhile."""
    import json

    from scalespace.scheduler.janitor import tidy
    from scalespace.storage import LocalStore
    from scalespace.worker.tasks import run_task

    calls: list[tuple[str, str]] = []

    class Store(LocalStore):
        def put(self, namespace: str, ident: str, name: str, data: bytes) -> Any:
            calls.append(("put", name))
            return super().put(namespace, ident, name, data)

        def copy(self, namespace: str, ident: str, src: str, dst: str) -> None:
            calls.append(("copy", dst))
            super().copy(namespace, ident, src, dst)

    store = Store(settings.results_dir)
    rt = _runtime(settings, store)
    job_id = api.post("/v1/jobs", json={"spec": SPEC}).json()["id"]
    assert run_task(rt, job_id) == "succeeded"
    manifest = store.manifest(job_id)
    # the artifacts (on upload threads, in any order), then one manifest: the job's, after the commit
    assert sorted(calls[:-1]) == sorted(("put", a["path"]) for a in manifest["artifacts"])
    assert calls[-1] == ("put", "manifest.json")
    assert all(a["path"].startswith("attempt-1/") for a in manifest["artifacts"]) and manifest["attempt"] == 1
    held = jobstore.get(job_id)
    assert held.manifest_held and held.committed_attempt == 1
    assert store.get("jobs", job_id, "manifest.json") == jobstore.manifest(job_id) == store.json_bytes(manifest)

    # the committer could not publish (S3 away after the commit, or the worker gone): the API serves the kept
    # bytes, then the janitor publishes them (no copy: the attempt has no manifest of its own)
    from pathlib import Path

    Path(store.location("jobs", job_id, "manifest.json")).unlink()
    view = api.get(f"/v1/jobs/{job_id}").json()
    url = next(a["url"] for a in view["artifacts"] if a["name"] == "manifest.json")
    got = api.get(url.replace("http://testserver", ""))
    assert got.status_code == 200 and got.content == jobstore.manifest(job_id)
    assert got.headers["content-type"].startswith("application/json") and json.loads(got.content) == manifest
    head = api.head(url.replace("http://testserver", ""))
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(got.content)
    calls.clear()
    kept = jobstore.manifest(job_id)
    assert tidy(jobstore, store, grace_s=0) == 1
    assert calls == [("put", "manifest.json")]
    assert store.get("jobs", job_id, "manifest.json") == kept
    # published: the job store drops its copy, and the API serves manifest.json from the store
    assert jobstore.manifest(job_id) is None and jobstore.get(job_id).manifest_held
    again = api.get(url.replace("http://testserver", ""))
    assert again.status_code == 200 and again.content == kept


def test_a_child_is_published_before_its_parent_is_queued(settings, jobstore):
    from scalespace.storage import LocalStore
    from scalespace.worker.tasks import run_task

    store = LocalStore(settings.results_dir)
    rt = _runtime(settings, store)
    queued: list[tuple[str, bool]] = []
    rt.enqueue = lambda job_id, lane: queued.append((job_id, store.manifest("child") is not None))
    _submit(jobstore, "parent")
    jobstore.begin("parent", "p/1", "p", lease_s=30, max_attempts=3)
    _submit(jobstore, "child", parent="parent")
    assert jobstore.wait_for_children("parent", "p/1", ["child"]) == 1
    assert run_task(rt, "child") == "succeeded"
    assert queued == [("parent", True)]  # the parent, queued once the child's manifest was there
