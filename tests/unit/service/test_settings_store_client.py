"""Settings, store selection, S3 keys, the Python client and the service CLI commands."""

from __future__ import annotations

import threading
import time

import pytest

from scalespace import ScalespaceError
from scalespace.config import Settings
from scalespace.storage import LocalStore, S3Store, store_from_settings

TOKEN = "unit-token"  # as in conftest.py
SPEC = {"kind": "sample", "process": "vp", "data": "digits", "n": 4, "steps": 5}


def test_settings_lanes_and_store_choice(tmp_path):
    s = Settings(lane_limits="interactive=5,batch=7", api_token=" a, b ,", results_dir=str(tmp_path))
    assert s.lanes() == {"interactive": 5, "batch": 7} and s.api_tokens() == ["a", "b"]
    with pytest.raises(ValueError, match="SCALESPACE_LANE_LIMITS"):
        Settings(lane_limits="interactive=lots")
    assert isinstance(store_from_settings(s), LocalStore)
    s3 = store_from_settings(Settings(s3_endpoint="http://127.0.0.1:9", s3_bucket="bkt", s3_prefix="a/b"))
    assert isinstance(s3, S3Store) and s3.key("jobs", "j1", "x.npz") == "a/b/jobs/j1/x.npz"
    assert s3.location("models", "m1") == "s3://bkt/a/b/models/m1/"


@pytest.mark.parametrize("ident, name", [("../x", "a"), ("ok", "../a"), ("a/b", "c"), ("ok", ".hidden"), ("", "a")])
def test_s3_keys_refuse_traversal(ident, name):
    store = S3Store("bkt", "p", "http://127.0.0.1:9", client=object())
    with pytest.raises(ScalespaceError):
        store.key("jobs", ident, name)


@pytest.mark.parametrize("kwargs, words", [({"bucket": "A_B"}, "SCALESPACE_S3_BUCKET"),
                                           ({"bucket": "bkt", "prefix": "../up"}, "SCALESPACE_S3_PREFIX")])
def test_s3_settings_errors_name_the_variable(kwargs, words):
    with pytest.raises(ScalespaceError, match=words):
        S3Store(endpoint_url="http://127.0.0.1:9", client=object(), **kwargs)


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
    from scalespace.worker.celery_app import make_celery

    conf = make_celery(Settings(redis_url="redis://h:1/0", nightly_sweeps="a, b", nightly_cron="30 2 * * *")).conf
    assert sorted(conf.beat_schedule) == ["nightly-sweep-a", "nightly-sweep-b"]
    assert conf.beat_schedule["nightly-sweep-a"]["args"] == ["a"]
    with pytest.raises(ScalespaceError, match="SCALESPACE_NIGHTLY_CRON"):
        make_celery(Settings(redis_url="redis://h:1/0", nightly_sweeps="a", nightly_cron="nightly"))


@pytest.fixture
def live_api(settings):
    """The API on a real port (uvicorn in a thread), for the client and the CLI."""
    import socket

    import uvicorn

    from scalespace.scheduler.api import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    t.join(timeout=10)


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


def test_cli_submit_status_cancel_fetch(live_api, tmp_path, monkeypatch, capsys):
    from scalespace.scheduler.cli import main
    from scalespace.config import get_settings

    monkeypatch.setenv("SCALESPACE_API_URL", live_api)
    monkeypatch.setenv("SCALESPACE_API_TOKEN", TOKEN)
    get_settings.cache_clear()
    try:
        job_file = tmp_path / "job.yaml"
        job_file.write_text("kind: sample\nprocess: vp\ndata: digits\nn: 4\nsteps: 5\n")
        assert main(["submit", str(job_file), "--lane", "batch", "--key", "cli-1"]) == 0
        job_id = capsys.readouterr().out.strip()
        assert main(["status", job_id]) == 0 and f"{job_id} sample queued" in capsys.readouterr().out
        assert main(["cancel", job_id]) == 0 and "cancelled" in capsys.readouterr().out
        assert main(["fetch", job_id, str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is cancelled, it has no results" in err
        job_file.write_text("kind: sample\nprocess: vp\ndata: digits\nn: 0\n")
        assert main(["submit", str(job_file)]) == 2 and "spec.n:" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()
