"""Fixtures for the service's integration tests: a real redis-server, SeaweedFS S3, the API and Celery workers.

Each test gets its own Redis database (the job store and the broker) and its
own S3 key prefix, so tests do not see each other's jobs.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from service_infra import TOKEN, RedisServer, WeedServer, WorkerProcess, settings_env

BUCKET = "scalespace-it"
_db = itertools.count(1)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeedServer]:
    server = WeedServer(tmp_path_factory.mktemp("weed")).start()
    server.client().create_bucket(Bucket=BUCKET)
    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = server.ACCESS, server.SECRET
    yield server
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


@pytest.fixture
def make_settings(redis_server: RedisServer, weed: WeedServer, tmp_path: Path) -> Any:
    """Settings for one test: its own Redis database and S3 prefix; short leases so faults resolve fast."""
    from scalespace.config import Settings

    n = next(_db)
    base = dict(
        redis_url=f"{redis_server.url}/{n}", s3_endpoint=weed.endpoint, s3_bucket=BUCKET, s3_prefix=f"it{n}",
        s3_create_bucket=True, s3_max_attempts=2, api_token=TOKEN, lease_s=5, heartbeat_s=1,
        retry_backoff_s=0.5, retry_backoff_max_s=2, max_deliveries=3, startup_wait_s=30,
        heartbeat_file=str(tmp_path / "worker-heartbeat"), worker_shutdown_timeout_s=2,
        results_dir=str(tmp_path / "local-results"),
    )

    def make(**overrides: Any) -> Settings:
        return Settings(**{**base, **overrides})

    return make


@pytest.fixture
def settings(make_settings: Any) -> Any:
    return make_settings()


@pytest.fixture
def api(settings: Any) -> Any:
    """The API over HTTP (ASGI test transport), authorised."""
    from fastapi.testclient import TestClient

    from scalespace.scheduler.api import create_app

    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


@pytest.fixture
def worker_process(tmp_path: Path) -> Iterator[Any]:
    """Start `scalespace worker` processes; all are stopped at the end of the test."""
    started: list[WorkerProcess] = []

    def start(settings: Any, name: str = "proc", **env: str) -> WorkerProcess:
        e = settings_env(settings)
        e.update(env)
        e["SCALESPACE_HEARTBEAT_FILE"] = str(tmp_path / f"heartbeat-{name}")
        w = WorkerProcess(e, tmp_path / f"worker-{name}.log", f"{name}@test")
        started.append(w)
        return w

    yield start
    for w in started:
        w.kill()
