"""The API against embedded Redis and a local store: health, readiness, admission, the published OpenAPI document."""

from __future__ import annotations

TOKEN = "unit-token"  # as in tests/unit/conftest.py

SPEC = {"kind": "sample", "process": "vp", "data": "digits", "n": 4, "steps": 8, "seed": 1}


def test_health_ready_and_auth(api, settings):
    assert api.get("/v1/health", headers={"Authorization": ""}).json()["status"] == "ok"
    r = api.get("/v1/ready", headers={"Authorization": ""})
    assert r.status_code == 200 and r.json()["ready"] is True
    assert api.get("/v1/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert api.get("/metrics", headers={"Authorization": ""}).status_code == 401
    assert api.get("/v1/jobs").status_code == 200
    root = api.get("/", headers={"Authorization": ""})
    assert root.status_code == 200 and root.json()["jobs"] == "/v1/jobs" and "SCALESPACE_API_TOKEN" in root.json()["auth"]


def test_ready_is_503_when_redis_is_unreachable(settings):
    from fastapi.testclient import TestClient

    from scalespace.scheduler.api import create_app

    broken = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(broken)) as api:
        r = api.get("/v1/ready")
        assert r.status_code == 503 and "SCALESPACE_REDIS_URL" in r.json()["checks"]["redis"]
        sub = api.post("/v1/jobs", json={"spec": SPEC}, headers={"Authorization": f"Bearer {TOKEN}"})
        assert sub.status_code == 503 and sub.json()["error"] == "unavailable" and sub.headers["Retry-After"]


def test_the_published_openapi_document_is_current():
    """docs/openapi.json is what `scalespace api --openapi docs/openapi.json` writes today."""
    import json
    from pathlib import Path

    from scalespace.scheduler.api import openapi_document

    published = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"
    current = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
    assert published.read_text() == current, "regenerate it: scalespace api --openapi docs/openapi.json"


def test_admission_runs_the_check_of_each_kind(api):
    """Refused at submission by the check of the spec's kind (scalespace.jobs.kinds); a sweep's children by theirs."""
    cases = [
        ({**SPEC, "process": "blurring", "sampler": "ddim"}, "spec.sampler"),
        ({"kind": "train", "process": "vp", "data": "digits", "objective": "one_step"}, "spec.objective"),
        ({"kind": "evaluate", "process": "osmosis", "data": "digits", "process_params": {"guidance": "per_sample"}},
         "spec.process_params.guidance"),
        ({"kind": "sweep", "name": "s", "processes": ["vp", "blurring"], "data": ["digits"],
          "template": {"kind": "sample", "sampler": "ddim"}}, "spec.template.sampler"),
    ]
    for spec, field in cases:
        r = api.post("/v1/jobs", json={"spec": spec})
        assert r.status_code == 422 and r.json()["field"] == field, r.json()
    assert api.get("/v1/jobs").json()["count"] == 0


def test_a_submission_is_answered_from_the_record_it_wrote(api, settings):
    """No second read for the answer: it equals what a read gives, queue position included; an idempotent
    resubmission (nothing written) is answered from a read."""
    from scalespace.scheduler.jobstore import JobStore

    auth = {"Authorization": f"Bearer {TOKEN}"}
    first = api.post("/v1/jobs", json={"spec": SPEC, "deadline_s": 600}, headers=auth).json()
    second = api.post("/v1/jobs", json={"spec": {**SPEC, "seed": 2}}, headers={**auth, "Idempotency-Key": "k"})
    assert second.status_code == 201 and second.json()["queue_position"] == 2
    for sub in (first, second.json()):
        assert sub == api.get(f"/v1/jobs/{sub['id']}", headers=auth).json()
    reads = []
    get = JobStore.get
    api.app.state.services.jobstore.get = lambda job_id: reads.append(job_id) or get(api.app.state.services.jobstore, job_id)
    again = api.post("/v1/jobs", json={"spec": {**SPEC, "seed": 2}}, headers={**auth, "Idempotency-Key": "k"})
    assert again.status_code == 200 and again.json() == second.json() and reads == [second.json()["id"]]
    api.post("/v1/jobs", json={"spec": {**SPEC, "seed": 3}}, headers=auth)
    assert reads == [second.json()["id"]]  # a new job: no read


def test_both_submission_paths_admit_alike(api, settings, jobstore):
    """The event loop's path (the app's own job store: async Redis, a model's card looked up on a thread) and
    the blocking one on a thread (a job store handed in) give the same answers."""
    from fastapi.testclient import TestClient

    from scalespace.scheduler.api import create_app
    from scalespace.scheduler.queues import Enqueuer, celery_client
    from scalespace.storage import LocalStore

    auth = {"Authorization": f"Bearer {TOKEN}"}
    handed = create_app(settings, jobstore=jobstore, store=LocalStore(settings.results_dir),
                        enqueue=Enqueuer(celery_client(settings)))
    with TestClient(handed, headers=auth) as blocking:
        for client in (api, blocking):
            ok = client.post("/v1/jobs", json={"spec": SPEC, "lane": "interactive"})
            assert ok.status_code == 201 and ok.json()["state"] == "queued", ok.text
            unknown = client.post("/v1/jobs", json={"spec": {**SPEC, "model": "vp-nothing"}})
            assert unknown.status_code == 422 and unknown.json()["field"] == "spec.model"
            assert "unknown model id 'vp-nothing'" in unknown.json()["detail"]
            keyed = {**auth, "Idempotency-Key": f"same-{id(client)}"}
            first = client.post("/v1/jobs", json={"spec": SPEC}, headers=keyed)
            again = client.post("/v1/jobs", json={"spec": SPEC}, headers=keyed)
            assert (first.status_code, again.status_code) == (201, 200) and again.json()["id"] == first.json()["id"]
            other = client.post("/v1/jobs", json={"spec": {**SPEC, "seed": 9}}, headers=keyed)
            assert other.status_code == 409 and other.json()["field"] == "Idempotency-Key"
    queued = jobstore.list(state="queued")
    assert len(queued) == 4 and {r.lane for r in queued} == {"interactive", "batch"}
    # which path each took: the app's own loop made its Redis client, the handed-in one made none
    assert len(api.app.state.services._async) == 1 and len(handed.state.services._async) == 0
