"""The Python client against the API on a real port (the job is run by calling the worker's task)."""

from __future__ import annotations

import pytest

from scalespace import ScalespaceError

TOKEN = "unit-token"  # as in tests/unit/conftest.py
SPEC = {"kind": "sample", "process": "vp", "data": "digits", "n": 4, "steps": 5}


def test_client_submit_wait_download(live_api, settings, tmp_path):
    from scalespace.scheduler.client import Client, LaneFullError
    from scalespace.worker.celery_app import make_celery
    from scalespace.worker.runtime import runtime_for
    from scalespace.worker.tasks import run_task

    with Client(live_api, token=TOKEN) as c:
        job = c.submit(SPEC, lane="interactive", idempotency_key="k")
        assert c.submit(SPEC, lane="interactive", idempotency_key="k")["id"] == job["id"]
        with pytest.raises(ScalespaceError, match="has no results"):
            c.download(job["id"], tmp_path)
        run_task(runtime_for(make_celery(settings, with_tasks=True)), job["id"])
        seen = []
        assert c.wait(job["id"], timeout_s=30, on_progress=seen.append)["state"] == "succeeded" and seen
        names = {p.name for p in c.download(job["id"], tmp_path / "out")}
        assert {"samples.npz", "manifest.json"} <= names and c.list(state="succeeded")[0]["id"] == job["id"]
        with pytest.raises(ScalespaceError, match=r"spec.n: .*\(HTTP 422\)"):
            c.submit({**SPEC, "n": -1})
    with Client(live_api, token="wrong") as c, pytest.raises(ScalespaceError, match="SCALESPACE_API_TOKEN"):
        c.get(job["id"])
    with Client("http://127.0.0.1:1", token=TOKEN) as c, pytest.raises(ScalespaceError, match="cannot reach the API"):
        c.get("x")
    assert issubclass(LaneFullError, ScalespaceError)
