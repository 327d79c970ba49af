"""Job ids: 130 random bits, time-sortable, and a collision never merges two jobs (the store's conditional insert)."""

from __future__ import annotations

import itertools
import re
from datetime import datetime, timedelta, timezone

import pytest

SPEC = {"kind": "sample", "process": "vp", "data": "digits", "n": 4, "steps": 8, "seed": 1}
ID = re.compile(r"^sample-(\d{8}T\d{9}Z)-([0-9a-hjkmnp-tv-z]{26})$")


def test_20000_ids_are_distinct_well_formed_and_sort_by_time():
    from scalespace.ids import check_id
    from scalespace.jobs.run import new_job_id
    from scalespace.jobs.specs import parse_spec

    spec = parse_spec(SPEC)
    ids = [new_job_id(spec) for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    stamps = []
    for i in ids:
        m = ID.match(i)
        assert m and check_id(i) == i and len(i) <= 128, i
        stamps.append(m.group(1))
    assert stamps == sorted(stamps)  # made in this order
    assert [ID.match(i).group(1) for i in sorted(ids)] == sorted(stamps)  # sorting the ids sorts them by time
    # the random part is uniform: every base32 character shows up in every position
    for pos in range(26):
        assert len({ID.match(i).group(2)[pos] for i in ids[:2000]}) == 32


def test_ids_made_later_sort_later():
    from scalespace.ids import new_id

    t0 = datetime(2026, 12, 1, 16, 33, 58, 123456, tzinfo=timezone.utc)
    times = [t0 + timedelta(milliseconds=k) for k in (0, 1, 999, 1000, 60_000, 86_400_000)]
    ids = [new_id("sample", t) for t in times]
    assert ids == sorted(ids) and ids[0].startswith("sample-20261201T163358123Z-")


def test_a_forced_collision_still_makes_two_jobs(api, monkeypatch):
    """The id maker returns the same id twice: the second submission draws again instead of joining the first job."""
    import scalespace.scheduler.submit as submit

    drawn = itertools.chain(["sample-same", "sample-same"], (f"sample-fresh-{k}" for k in itertools.count()))
    monkeypatch.setattr(submit, "new_job_id", lambda spec: next(drawn))
    a = api.post("/v1/jobs", json={"spec": SPEC})
    b = api.post("/v1/jobs", json={"spec": SPEC})
    assert a.status_code == 201 and b.status_code == 201, (a.json(), b.json())
    assert a.json()["id"] == "sample-same" and b.json()["id"] == "sample-fresh-0"
    assert api.get("/v1/jobs").json()["count"] == 2
    assert api.delete("/v1/jobs/sample-same").json()["state"] == "cancelled"
    assert api.get("/v1/jobs/sample-fresh-0").json()["state"] == "queued"  # the other caller's job is untouched


def test_ids_that_keep_colliding_fail_clearly(settings, jobstore, monkeypatch):
    import scalespace.scheduler.submit as submit
    from scalespace import ScalespaceError
    from scalespace.jobs.specs import parse_spec

    spec = parse_spec(SPEC)
    calls = []
    enqueue = lambda job_id, lane: calls.append(job_id)  # noqa: E731
    first = submit.submit_spec(spec, settings=settings, jobstore=jobstore, enqueue=enqueue, lane="batch",
                               job_id="sample-taken")
    assert first.created and calls == ["sample-taken"]
    with pytest.raises(ScalespaceError, match="job_id: a job 'sample-taken' exists already"):
        submit.submit_spec(spec, settings=settings, jobstore=jobstore, enqueue=enqueue, lane="batch",
                           job_id="sample-taken")
    monkeypatch.setattr(submit, "new_job_id", lambda spec: "sample-taken")
    with pytest.raises(ScalespaceError, match="could not draw an unused job id"):
        submit.submit_spec(spec, settings=settings, jobstore=jobstore, enqueue=enqueue, lane="batch")
    assert calls == ["sample-taken"] and jobstore.get("sample-taken").state == "queued"


def test_the_store_never_overwrites_an_existing_id(jobstore):
    first = jobstore.submit("x", SPEC, kind="sample", spec_hash="h1", lane="batch", limit=-1)
    other = {**SPEC, "seed": 2}
    again = jobstore.submit("x", other, kind="sample", spec_hash="h2", lane="interactive", limit=-1)
    assert first.action == "created" and again.action == "exists"
    rec = jobstore.get("x")
    assert rec.spec == SPEC and rec.spec_hash == "h1" and rec.lane == "batch"
    assert jobstore.queue_position("x", "interactive") is None
