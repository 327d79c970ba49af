"""Worker names expand %h, %n and %d as Celery's own `celery worker -n` does, so two hosts never share a name."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from scalespace.worker.celery_app import worker_nodename

HOST = "gpu-7.cluster.example.com"


@pytest.mark.parametrize("name,expected", [
    ("w@%h", "w@gpu-7.cluster.example.com"),
    ("w@%n", "w@gpu-7"),
    ("w-%n@%d", "w-gpu-7@cluster.example.com"),
    ("serve0@%h", "serve0@gpu-7.cluster.example.com"),
    ("plain@node-1", "plain@node-1"),
    ("w", "celery@w"),  # Celery's own rule for a name without '@'
])
def test_names_expand_like_celery(name, expected):
    from celery.utils.nodenames import default_nodename, host_format

    assert worker_nodename(name, host=HOST) == expected
    assert worker_nodename(name, host=HOST) == host_format(default_nodename(name), host=HOST)  # Celery's -n
    assert "%" not in worker_nodename(name, host=HOST)


def test_the_default_name_and_this_host():
    assert worker_nodename(None, pid=42, host=HOST) == "scalespace-42@gpu-7.cluster.example.com"
    assert worker_nodename("w@%h") == f"w@{socket.gethostname()}"
    assert worker_nodename("w@%h", host="a.x") != worker_nodename("w@%h", host="b.x")  # two hosts, two names


def test_the_worker_command_starts_celery_with_the_expanded_name(settings, monkeypatch):
    """`scalespace worker --name w@%h`: the Celery worker (and so the name it registers) gets w@<host>."""
    import scalespace.worker.celery_app as celery_app
    from scalespace.cli import main
    from scalespace.config import get_settings

    started: dict[str, Any] = {}

    class FakeWorker:
        exitcode = 0

        def __init__(self, **kwargs: Any):
            started.update(kwargs)

        def start(self) -> None:
            pass

    class FakeApp:
        Worker = FakeWorker

    monkeypatch.setattr(celery_app, "make_celery", lambda *a, **k: FakeApp())
    for name, value in (("SCALESPACE_REDIS_URL", settings.redis_url), ("SCALESPACE_RESULTS_DIR", settings.results_dir),
                        ("SCALESPACE_STARTUP_WAIT_S", "0")):
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        assert main(["worker", "--name", "w@%h"]) == 0
    finally:
        get_settings.cache_clear()
    assert started["hostname"] == f"w@{socket.gethostname()}"
