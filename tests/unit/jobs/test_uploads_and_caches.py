"""A job's artifacts go up on upload threads (JobContext.put), and what is the same across a worker's jobs is
computed once per process (reference moments, package versions): hits equal, never shared for writing."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

import pytest

from scalespace.jobs import JobStopped, run_job
from scalespace.jobs.context import JobContext
from scalespace.storage import LocalStore

SPEC = {"kind": "sample", "process": "vp", "data": "digits", "n": 4, "steps": 4, "seed": 2}


class SlowStore(LocalStore):
    """A local store whose writes take `delay_s` each (an S3 PUT over a network), counting them."""

    def __init__(self, root: Any, delay_s: float = 0.0, fail_on: str | None = None):
        super().__init__(root)
        self.delay_s, self.fail_on = delay_s, fail_on
        self.writes: list[str] = []
        self.lock = threading.Lock()

    def put(self, namespace: str, ident: str, name: str, data: bytes) -> Any:
        time.sleep(self.delay_s)
        if self.fail_on is not None and name.endswith(self.fail_on):
            raise OSError(f"S3 refused {name}")
        with self.lock:
            self.writes.append(name)
        return super().put(namespace, ident, name, data)


def test_puts_return_before_their_uploads_land_and_the_artifacts_wait_for_all(tmp_path):
    store = SlowStore(tmp_path, delay_s=0.3)
    ctx = JobContext(job_id="j", store=store)
    blobs = {f"a{k}.bin": bytes([k]) * (1000 + k) for k in range(3)}
    t0 = time.perf_counter()
    refs = [ctx.put(name, data) for name, data in blobs.items()]
    assert time.perf_counter() - t0 < 0.3  # none of the three waited for its write
    listed = ctx.artifacts  # waits for every upload
    assert [a.name for a in listed] == list(blobs) == [r.name for r in refs]
    for a in listed:
        data = store.get("jobs", "j", a.path)
        assert data == blobs[a.name]
        assert a.sha256 == hashlib.sha256(data).hexdigest() and a.bytes == len(data)


def test_two_puts_of_one_name_land_in_order(tmp_path):
    class FirstSlow(LocalStore):
        calls = 0

        def put(self, namespace, ident, name, data):
            FirstSlow.calls += 1
            if FirstSlow.calls == 1:
                time.sleep(0.3)
            return super().put(namespace, ident, name, data)

    store = FirstSlow(tmp_path)
    ctx = JobContext(job_id="j", store=store)
    ctx.put("ck", b"old")
    ctx.put("ck", b"new")
    assert [a.sha256 for a in ctx.artifacts] == [hashlib.sha256(b"new").hexdigest()]
    assert store.get("jobs", "j", "ck") == b"new"


def test_a_job_whose_upload_fails_fails_and_has_no_manifest(tmp_path):
    # embedded: the manifest is the commit point, written once every artifact has landed: none is written
    store = SlowStore(tmp_path / "embedded", fail_on="grid.png")
    with pytest.raises(OSError, match="grid.png"):
        run_job(SPEC, store, job_id="sample-broken")
    assert store.manifest("sample-broken") is None
    assert not any(w.endswith("manifest.json") for w in store.writes)
    # the service: the attempt's manifest goes up beside the last artifacts, so it may land beside the failed
    # one (the janitor removes an uncommitted attempt's folder); run_job raises all the same, so the worker
    # commits nothing and publishes no manifest.json
    store = SlowStore(tmp_path / "service", fail_on="grid.png")
    with pytest.raises(OSError, match="grid.png"):
        run_job(SPEC, store, job_id="sample-broken", attempt=1)
    assert store.manifest("sample-broken") is None
    assert all(w.startswith("attempt-1/") for w in store.writes) and "attempt-1/grid.png" not in store.writes


def test_the_manifest_lists_every_artifact_with_the_sha256_of_what_landed(tmp_path):
    store = SlowStore(tmp_path, delay_s=0.05)
    manifest = run_job(SPEC, store, job_id="sample-ok", attempt=2)
    names = {a["name"] for a in manifest["artifacts"]}
    assert names >= {"samples.npz", "grid.png", "trajectory.json"}
    for a in manifest["artifacts"]:
        data = store.get("jobs", "sample-ok", a["path"])
        assert a["path"].startswith("attempt-2/")
        assert hashlib.sha256(data).hexdigest() == a["sha256"] and len(data) == a["bytes"]
    # the service's attempt: run_job returns (the worker commits, with the manifest) once every artifact has
    # landed; the manifest itself goes up after the commit, as the job's manifest.json (the worker's part)
    assert set(store.writes) == {a["path"] for a in manifest["artifacts"]}
    assert store.manifest("sample-ok") is None
    # embedded, the manifest is the commit point: written last, after every artifact landed
    embedded = SlowStore(tmp_path / "embedded", delay_s=0.05)
    run_job(SPEC, embedded, job_id="sample-ok")
    assert embedded.writes[-1] == "manifest.json" and len(embedded.writes) == len(manifest["artifacts"]) + 1


def test_a_lost_lease_stops_further_uploads(tmp_path):
    store = SlowStore(tmp_path)
    owned = threading.Event()
    owned.set()

    def guard() -> None:
        if not owned.is_set():
            raise JobStopped("lease-lost")

    ctx = JobContext(job_id="j", store=store, attempt=3, guard=guard)
    ctx.put("first.bin", b"1")
    ctx.wait_uploads()
    owned.clear()  # another worker took the job
    ctx.put("second.bin", b"2")
    with pytest.raises(JobStopped, match="lease-lost"):
        ctx.put("third.bin", b"3")  # the refused upload fails the job at its next put ...
        ctx.wait_uploads()  # ... or here at the latest
    ctx.wait_uploads()
    assert store.writes == ["attempt-3/first.bin"]
    assert store.list("jobs", "j") == ["attempt-3/first.bin"]


def test_a_lost_lease_in_run_job_writes_no_artifact_after_it_and_no_manifest(tmp_path):
    store = SlowStore(tmp_path)
    checks = []

    def guard() -> None:  # the job store says: another delivery owns the job from the second write on
        checks.append(1)
        if len(checks) > 1:
            raise JobStopped("lease-lost")

    with pytest.raises(JobStopped, match="lease-lost"):
        run_job(SPEC, store, job_id="sample-lost", attempt=1, guard=guard)
    assert len(store.writes) <= 1 and not any(w.endswith("manifest.json") for w in store.writes)
    assert store.manifest("sample-lost") is None


def test_a_stop_waits_for_the_uploads_in_flight(tmp_path):
    store = SlowStore(tmp_path, delay_s=0.3)
    ctx = JobContext(job_id="j", store=store, should_stop=lambda: "cancelled")
    ctx.put("checkpoint.bin", b"state")
    with pytest.raises(JobStopped, match="cancelled"):
        ctx.check_stop()
    assert store.get("jobs", "j", "checkpoint.bin") == b"state"  # landed before the stop went up


def test_read_latest_sees_the_put_just_made(tmp_path):
    store = SlowStore(tmp_path, delay_s=0.2)
    ctx = JobContext(job_id="j", store=store, attempt=1)
    ctx.put("ck", b"fresh")
    assert ctx.read_latest("ck") == b"fresh"


def test_reference_moments_are_computed_once_and_a_job_cannot_change_them(monkeypatch):
    import scalespace.evaluation.sample_trajectory as st

    st._reference_moments.cache_clear()
    loads = []
    real = st.load_dataset
    monkeypatch.setattr(st, "load_dataset", lambda *a, **k: loads.append(a) or real(*a, **k))
    first = st.reference_moments("digits", None)
    expected = (first.center.clone(), first.m2.clone(), first.comoment.clone(), first.count)
    first.center.add_(1.0)  # a job that changes its copy in place ...
    first.comoment.mul_(0.0)
    second = st.reference_moments("digits", None)
    assert len(loads) == 1  # a hit: the held-out split is not read again
    assert second is not first and second.center.data_ptr() != first.center.data_ptr()
    assert (second.center.equal(expected[0]) and second.m2.equal(expected[1])  # ... changes nobody else's
            and second.comoment.equal(expected[2]) and second.count == expected[3])
    st._reference_moments.cache_clear()
    fresh = st.reference_moments("digits", None)
    assert fresh.center.equal(expected[0]) and fresh.comoment.equal(expected[2])  # the hit equals a fresh computation


def test_package_versions_are_read_once_and_handed_out_fresh(monkeypatch):
    from scalespace.jobs import manifest

    manifest._package_versions.cache_clear()
    reads = []
    real = manifest.metadata.version
    monkeypatch.setattr(manifest.metadata, "version", lambda name: reads.append(name) or real(name))
    a = manifest.package_versions()
    a["torch"] = "changed"
    b = manifest.package_versions()
    assert b["torch"] != "changed" and b["python"]
    assert len(reads) == len(manifest.PACKAGES)  # once per process, not once per job
    assert manifest.code_version() == manifest.code_version()


def test_a_delete_of_the_jobs_folder_waits_for_its_uploads_in_flight(tmp_path):
    """Embedded, a failed job's partial artifacts are removed (run_job deletes its folder): an upload still in
    flight must not bring a file back after that."""
    store = SlowStore(tmp_path, delay_s=0.3)
    ctx = JobContext(job_id="j", store=store)
    ctx.put("samples.npz", b"partial")
    store.delete("jobs", "j")  # what run_job does when an embedded job fails
    time.sleep(0.4)
    assert store.list("jobs", "j") == [] and store.writes == ["samples.npz"]
