"""Bad input over HTTP: each a 4xx with a one-line message naming the field, never a 500; then a fuzzer.

The fuzzer is schemathesis, driven by the API's own OpenAPI document, against
the app wired to the real Redis and SeaweedFS; it counts the cases it sent and
every status code it got back.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, settings as hsettings
from service_infra import TOKEN

pytestmark = pytest.mark.integration

GOOD = {"kind": "sample", "process": "vp", "data": "digits", "n": 4, "steps": 10}


@pytest.mark.parametrize("body, status, field, words", [
    (b"{not json", 400, None, "not valid JSON"),
    (b"[1, 2]", 422, "body", "valid dictionary"),
    (json.dumps({"spec": {**GOOD, "colour": "red"}}).encode(), 422, "spec.colour", "Extra inputs"),
    (json.dumps({"spec": GOOD, "priority": 1}).encode(), 422, "priority", "Extra inputs"),
    (json.dumps({"spec": {**GOOD, "n": "many"}}).encode(), 422, "spec.n", "valid integer"),
    (json.dumps({"spec": {**GOOD, "steps": [10]}}).encode(), 422, "spec.steps", "valid integer"),
    (json.dumps({"spec": {**GOOD, "n": 10 ** 9}}).encode(), 422, "spec.n", "less than or equal"),
    (json.dumps({"spec": {**GOOD, "n": 500_000}}).encode(), 422, "spec.n", "SCALESPACE_MAX_N"),
    (json.dumps({"spec": {**GOOD, "model": "no-such-model"}}).encode(), 422, "spec.model", "unknown model id"),
    (json.dumps({"spec": {**GOOD, "model": "../../etc/passwd"}}).encode(), 422, "spec.model", "invalid model id"),
    (json.dumps({"spec": {**GOOD, "process": "teleport"}}).encode(), 422, "spec.process", "unknown process"),
    (json.dumps({"spec": {**GOOD, "steps": 5000}}).encode(), 422, "spec.steps", "exceeds"),
    (json.dumps({"spec": {"kind": "launch"}}).encode(), 422, "spec", "does not match"),
    (json.dumps({"spec": GOOD, "lane": "express"}).encode(), 422, "lane", "interactive"),
    (json.dumps({"spec": GOOD, "deadline_s": -5}).encode(), 422, "deadline_s", "greater than"),
    (json.dumps({"spec": {"kind": "sweep", "name": "../x", "processes": ["vp"], "data": ["digits"]}}).encode(),
     422, "spec.name", "invalid sweep name"),
    (json.dumps({"spec": {"kind": "sweep", "name": "s", "processes": ["vp"], "data": ["digits"],
                          "template": {"kind": "sample", "n": 10 ** 6}}}).encode(), 422, "spec.template.n", "MAX_N"),
    (b"{" + b'"pad": "' + b"x" * (2 << 20) + b'"}', 413, None, "SCALESPACE_MAX_BODY_BYTES"),
])
def test_bad_submissions_are_clear_4xx(api, body, status, field, words):
    r = api.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()
    assert err["field"] == field and words in err["detail"], err
    assert "\n" not in err["detail"] and "Traceback" not in err["detail"]


def test_ids_in_urls_and_auth(api, settings):
    assert api.get("/v1/jobs/no-such-job").status_code == 404
    r = api.get("/v1/jobs/a..b")
    assert r.status_code == 422 and r.json()["field"] == "job_id"
    assert api.get("/v1/jobs/..%2F..%2Fetc%2Fpasswd").status_code in (404, 422)
    assert api.get("/v1/jobs/x/artifacts/..%2Fmanifest.json").status_code in (404, 422)
    assert api.post("/v1/jobs", json={"spec": GOOD}, headers={"Idempotency-Key": "bad key\twith tab"}).status_code == 422
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        r = api.get("/v1/jobs", headers={"Authorization": ""} | headers)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert api.get("/v1/health", headers={"Authorization": ""}).status_code == 200
    ready = api.get("/v1/ready", headers={"Authorization": ""})
    assert ready.status_code == 200 and ready.json()["checks"] == {"redis": "ok", "store": "ok"}


def test_full_lane_answers_429_with_retry_after(make_settings):
    from fastapi.testclient import TestClient

    from scalespace.scheduler.api import create_app

    settings = make_settings(lane_limits="interactive=2,batch=10,nightly=10", retry_after_s=17)
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        codes = [api.post("/v1/jobs", json={"spec": {**GOOD, "seed": s}, "lane": "interactive"}).status_code
                 for s in range(3)]
        assert codes == [201, 201, 429]
        r = api.post("/v1/jobs", json={"spec": GOOD, "lane": "interactive"})
        assert r.headers["Retry-After"] == "17" and r.json()["field"] == "lane"
        assert api.post("/v1/jobs", json={"spec": GOOD, "lane": "batch"}).status_code == 201  # lanes are separate
        depth = [ln for ln in api.get("/metrics").text.splitlines() if ln.startswith("scalespace_queue_depth")]
        assert 'scalespace_queue_depth{lane="interactive"} 2.0' in depth


#: cases per operation and generation mode (valid-looking and deliberately invalid)
FUZZ_EXAMPLES = 30


def test_fuzz_never_5xx(settings):
    """schemathesis cases for every operation of the OpenAPI document, positive and negative."""
    from hypothesis import given
    from hypothesis.errors import Unsatisfiable

    from scalespace.scheduler.api import create_app

    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(settings),
                                            headers={"Authorization": f"Bearer {TOKEN}"})  # the schema needs the token
    seen: dict[str, int] = {}
    submits: dict[str, int] = {}
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @hsettings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                       database=None)
            def send(case) -> None:
                case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TOKEN}"}
                response = case.call()
                seen[str(response.status_code)] = seen.get(str(response.status_code), 0) + 1
                if case.method == "POST" and case.path == "/v1/jobs":
                    submits[str(response.status_code)] = submits.get(str(response.status_code), 0) + 1
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} {case.body!r:.200} -> "
                                    f"{response.status_code} {response.text[:200]}")

            try:
                send()
            except Unsatisfiable:  # an operation with no inputs has no invalid variant to send
                pass
    total = sum(seen.values())
    print(f"\nschemathesis: {total} cases over {len(list(schema.get_all_operations()))} operations; "
          f"status codes {dict(sorted(seen.items()))}; POST /v1/jobs: {dict(sorted(submits.items()))}")
    assert total > 300 and not failures, failures[:5]
    assert not any(code.startswith("5") for code in seen)
