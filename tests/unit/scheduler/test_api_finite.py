"""The API refuses JSON's NaN and Infinity literals with 422 naming the field, and stores nothing."""

from __future__ import annotations

import pytest

SPEC = '{"kind": "sample", "process": "vp", "data": "digits", "n": 4, "steps": 8%s}'
CASES = [
    ('{"spec": %s}' % (SPEC % ', "eta": Infinity'), "spec.eta"),
    ('{"spec": %s}' % (SPEC % ', "eta": NaN'), "spec.eta"),
    ('{"spec": %s}' % (SPEC % ', "eta": -Infinity'), "spec.eta"),
    ('{"spec": %s}' % (SPEC % ', "process_params": {"schedule": "custom", "betas": [0.1, Infinity]}'),
     "spec.process_params.betas.1"),
    ('{"spec": %s}' % (SPEC % ', "process_params": {"beta_end": NaN}'), "spec.process_params.beta_end"),
    ('{"spec": %s, "deadline_s": Infinity}' % (SPEC % ""), "deadline_s"),
    ('{"spec": {"kind": "train", "process": "vp", "data": "digits", "network": {"channels": NaN}}}', "spec.network.channels"),
    ('{"spec": {"kind": "sweep", "name": "s", "processes": ["vp"], "data": ["digits"], '
     '"template": {"kind": "sample", "eta": Infinity}}}', "spec.template.eta"),
]


def test_non_finite_literals_are_422_naming_the_field(api):
    for body, field in CASES:
        r = api.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, r.json()
        got = r.json()
        assert got["field"] == field and got["detail"].startswith(f"{field}: ") and "finite number" in got["detail"], got
    assert api.get("/v1/jobs").json()["count"] == 0  # nothing stored


def test_a_finite_spec_is_still_accepted(api):
    r = api.post("/v1/jobs", content='{"spec": %s}' % (SPEC % ', "eta": 0.5'), headers={"Content-Type": "application/json"})
    assert r.status_code == 201 and r.json()["spec"]["eta"] == 0.5


def test_the_client_refuses_them_before_sending():
    from scalespace import ScalespaceError
    from scalespace.scheduler.client import Client

    with Client("http://127.0.0.1:9", token="t") as c, pytest.raises(ScalespaceError, match=r"^eta: NaN is not allowed"):
        c.submit({"kind": "sample", "process": "vp", "data": "digits", "eta": float("nan")})
